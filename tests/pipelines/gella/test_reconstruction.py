"""The ``reconstruction`` part of GELLA's evaluation (Table XVI(a)): the mask decoder's query masks
against the masks it was given, class-agnostic COCO AP on the colormap's ``mask_size`` square."""

import json
from types import SimpleNamespace

import numpy as np
import torch

from esgkit.core import EntityMasks, get_registry
from esgkit.layers.geometry import sample_masks
from esgkit.pipelines.gella.predict import reconstruction

SIZE = 64


def _score(tmp_path, outputs, given):
    """APe_rec of per-image (query mask logits, entityness logits) against the given masks."""
    pipeline = SimpleNamespace(config=SimpleNamespace(mask_size=SIZE))
    images, annotations, detections = [], [], []
    for k, ((logits, entityness), masks) in enumerate(zip(outputs, given)):
        out = SimpleNamespace(masks=logits[None], entityness=entityness[None])
        image, anns, dets = reconstruction(pipeline, masks, out, k)
        images.append(image)
        annotations += anns
        detections += dets
    for k, a in enumerate(annotations):
        a["id"] = k + 1
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))
    pred.write_text(json.dumps(detections))
    return get_registry().build("evaluator", {"name": "entity"}).score(str(gt), str(pred))["APe"]


def _scene(seed):
    """Three disjoint rectangles on a 96 × 128 image (not square: the masks are placed like the colormap)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 96, 128), bool)
    for k, m in enumerate(masks):
        y, x = rng.integers(0, 60), 42 * k + rng.integers(0, 8)
        m[y:y + 30, x:x + 34] = True
    return EntityMasks(masks)


def test_queries_that_repeat_their_input_score_one_and_others_do_not(tmp_path):
    scenes = [_scene(s) for s in range(3)]
    entity = torch.tensor([[4.0, -4.0]])
    perfect = []
    for masks in scenes:  # query logits on the mask_size square, exactly the input masks placed there
        placed = torch.from_numpy(sample_masks(masks.masks, SIZE, (SIZE, SIZE))).float() * 20 - 10
        perfect.append((placed, entity.expand(len(masks), 2)))
    assert _score(tmp_path, perfect, scenes) == 1.0
    shifted = [(torch.roll(logits, 20, dims=2), e) for logits, e in perfect]
    assert _score(tmp_path, shifted, scenes) < 0.2
    # an extra query with no input entity, scored above the right ones, is a false positive first
    extra = [(torch.cat([logits, torch.full((1, SIZE, SIZE), -10.0).index_fill_(1, torch.arange(5), 10.0)]),
              torch.cat([e, torch.tensor([[9.0, -9.0]])])) for logits, e in perfect]
    assert _score(tmp_path, extra, scenes) < 1.0


def test_no_entity_and_no_query_mask_give_empty_lists():
    pipeline = SimpleNamespace(config=SimpleNamespace(mask_size=SIZE))
    out = SimpleNamespace(masks=torch.full((1, 4, 16, 16), -5.0), entityness=torch.zeros(1, 4, 2))
    image, anns, dets = reconstruction(pipeline, EntityMasks.empty(40, 50), out, "a")
    assert image == {"id": "a", "height": SIZE, "width": SIZE} and anns == [] and dets == []
