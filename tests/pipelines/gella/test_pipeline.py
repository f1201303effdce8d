"""The GELLA pipeline: build-time checks, end to end on a hand-made image (with a stand-in language
decoder and with the real tiny LLaVA-LLaMA one), the query → entity rule, gradients to every
trainable part, checkpoints, and the `esgkit run` / `esgkit profile` commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from esgkit.core import (
    CheckpointError, CompatibilityError, ConfigError, EntityMasks, Grounding, InputError, LanguageOutput, NounPhrase,
    Registry,
    build_pipeline,
)
from esgkit import builtin

sys.path.insert(0, str(Path(__file__).parent))
from gella_fakes import FakeLanguageDecoder  # noqa: E402

CAPTION = "a red circle and two squares under the sky"


def _registry() -> Registry:
    registry = Registry()
    registry.load_plugins(builtin, entry_points=[])
    registry.register("language_decoder", "fake", FakeLanguageDecoder, origin="tests")
    return registry


REGISTRY = _registry()


def _config(**pipeline):
    return {
        "pipeline": {"name": "gella", **pipeline}, "segmenter": "ground_truth",
        "colorizer": {"name": "random", "seed": 0}, "colormap_encoder": "mobilenetv2", "vision_encoder": "clip",
        "fuser": "resoblend", "mask_decoder": "mask2former", "language_decoder": "fake", "associator": "fc",
    }


def _build(seed=0, config=None, **pipeline):
    torch.manual_seed(seed)
    return build_pipeline(config or _config(**pipeline), registry=REGISTRY)


@pytest.fixture(scope="module")
def scene():
    """96×160 image: sky on top, a red circle and two grey squares below."""
    ids = np.zeros((96, 160), np.int64)
    ids[:40] = 7
    yy, xx = np.mgrid[:96, :160]
    ids[(yy - 65) ** 2 + (xx - 30) ** 2 < 15 ** 2] = 3
    ids[55:80, 70:95] = 11
    ids[55:80, 115:140] = 12
    image = np.full((96, 160, 3), 40, np.uint8)
    image[ids == 7] = (120, 170, 250)
    image[ids == 3] = (220, 30, 30)
    image[(ids == 11) | (ids == 12)] = (150, 150, 150)
    return image, EntityMasks.from_id_map(ids)


@pytest.fixture(scope="module")
def pipeline():
    return _build()


def test_end_to_end_gives_a_well_formed_grounding(pipeline, scene, tmp_path):
    image, masks = scene
    pipeline.config.threshold = 0.0  # random weights: keep every matched entity
    try:
        g = pipeline.run(image, masks=masks, caption=CAPTION)
    finally:
        pipeline.config.threshold = 0.5
    assert isinstance(g, Grounding) and g.caption.text == CAPTION
    assert [p.phrase.text for p in g.groundings] == ["circle", "squares", "sky"]
    for p in g.groundings:
        assert CAPTION[p.phrase.start:p.phrase.end] == p.phrase.text
        assert set(p.entity_ids) <= {3, 7, 11, 12}
        assert all(0.0 <= s <= 1.0 for s in p.scores) and list(p.scores) == sorted(p.scores, reverse=True)
    assert g.groundings[1].phrase.plural
    assert all(len(p.entity_ids) <= 1 for p in g.groundings if not p.phrase.plural)  # singular: top-1
    assert sorted(g.masks.ids.tolist()) == [3, 7, 11, 12]
    again = Grounding.from_dict(json.loads(json.dumps(g.to_dict())))
    assert again.to_dict() == g.to_dict()
    paths = pipeline.write(g, str(tmp_path), image)
    assert [Path(p).name for p in paths] == ["grounding.json", "overlay.png"]
    from PIL import Image

    overlay = np.asarray(Image.open(paths[1]))
    assert overlay.shape[0] >= 96 and overlay.shape[1] > 160  # the legend strip is to the right


def test_without_caption_the_decoder_describes_first(pipeline, scene):
    image, masks = scene
    g = pipeline.run(image, masks=masks)
    assert g.caption.text == "a circle under the sky"  # the stand-in decoder's "description"
    assert [p.phrase.text for p in g.groundings] == ["circle", "sky"]


def test_query_matching_and_one_to_many_threshold(pipeline, scene):
    _, masks = scene
    size = pipeline.config.mask_size
    # query k reconstructs input entity k (k < 4); the rest predict nothing
    from esgkit.layers.geometry import resize_pad

    ent = resize_pad(torch.from_numpy(masks.masks.astype(np.float32)), size, mode="nearest")[0]
    ent = torch.nn.functional.interpolate(ent[None], size=(size // 4, size // 4), mode="area")[0]
    q = pipeline.mask_decoder.config.num_queries
    logits = torch.full((q, size // 4, size // 4), -10.0)
    logits[: len(masks)] = torch.where(ent > 0.5, 10.0, -10.0)
    logits[len(masks)] = torch.where(ent[1] > 0.5, 10.0, -10.0)  # a duplicate of entity 1
    match = pipeline.match_queries(logits, masks)
    assert match[: len(masks)].tolist() == list(range(len(masks)))
    assert match[len(masks)] == 1 and (match[len(masks) + 1:] == -1).all()
    phrases = (NounPhrase("circle", 6, 12), NounPhrase("squares", 21, 28, True))
    lang = LanguageOutput("", phrases, torch.zeros(2, 8))
    assoc = torch.full((2, q), -5.0)
    assoc[0, 0] = 3.0                           # circle → entity index 0
    assoc[1, 2], assoc[1, 3] = 2.0, 4.0         # squares → entity indices 2 and 3 (one-to-many)
    assoc[1, len(masks)] = -1.0                 # duplicate of entity 1: σ = 0.27, below the threshold
    g = pipeline.ground(lang, CAPTION, assoc, match, masks)
    ids = masks.ids.tolist()
    assert g.groundings[0].entity_ids == (ids[0],)
    assert g.groundings[1].entity_ids == (ids[3], ids[2])  # best score first
    np.testing.assert_allclose(g.groundings[1].scores, torch.sigmoid(torch.tensor([4.0, 2.0])).numpy(), rtol=1e-6)
    assoc[0, 1] = 5.0                           # circle also scores high on entity index 1 ...
    assert pipeline.ground(lang, CAPTION, assoc, match, masks).groundings[0].entity_ids == (ids[1],)  # ... top-1
    pipeline.config.singular_top1 = False
    try:
        assert pipeline.ground(lang, CAPTION, assoc, match, masks).groundings[0].entity_ids == (ids[1], ids[0])
    finally:
        pipeline.config.singular_top1 = True


def test_hungarian_query_matching_gives_every_entity_one_query(pipeline, scene):
    """iou matching loses an entity whose query covers it poorly and maps duplicates many-to-one;
    hungarian (the training loss's assignment) maps one query per entity, so none is lost."""
    _, masks = scene
    size = pipeline.config.mask_size
    from esgkit.layers.geometry import resize_pad

    ent = resize_pad(torch.from_numpy(masks.masks.astype(np.float32)), size, mode="nearest")[0]
    ent = torch.nn.functional.interpolate(ent[None], size=(size // 4, size // 4), mode="area")[0] > 0.5
    q = pipeline.mask_decoder.config.num_queries
    logits = torch.full((q, size // 4, size // 4), -10.0)
    for k in range(1, len(masks)):
        logits[k] = torch.where(ent[k], 10.0, -10.0)
    ys, xs = torch.nonzero(ent[0], as_tuple=True)
    logits[0, ys[0], xs[0]] = 10.0                               # query 0: one cell of entity 0 (IoU < 0.1)
    logits[len(masks)] = torch.where(ent[1], 10.0, -10.0)        # a duplicate of entity 1
    entityness = torch.full((q,), -5.0)
    entityness[: len(masks)] = 5.0
    assert int(ent[0].sum()) > 10
    by_iou = pipeline.match_queries(logits, masks)
    assert by_iou[0] == -1 and by_iou[len(masks)] == 1          # entity 0 lost, entity 1 twice
    pipeline.config.query_matching = "hungarian"
    try:
        one_to_one = pipeline.match_queries(logits, masks, entityness)
        with pytest.raises(InputError, match="entityness"):
            pipeline.match_queries(logits, masks)
    finally:
        pipeline.config.query_matching = "iou"
    assert one_to_one[: len(masks)].tolist() == list(range(len(masks)))
    assert (one_to_one[len(masks):] == -1).all()
    with pytest.raises(ConfigError, match="query_matching"):
        _build(query_matching="nearest")


def test_gradients_reach_every_trainable_part(scene):
    image, masks = scene
    p = _build()
    p.model.train()
    pixels = p.vision_encoder.preprocess(image)[None]
    z_v, out = p.visual_forward(pixels, p.mask_input(masks)[None])
    lang = p.language_decoder.extract(z_v, CAPTION)
    logits = p.associator(lang.seg_embeddings, out.embeddings[0])
    loss = logits.sigmoid().mean() + out.masks.sigmoid().mean() + out.entityness.square().mean()
    loss = loss + sum(a["masks"].sigmoid().mean() + a["entityness"].square().mean() for a in out.aux)
    loss.backward()
    # Every weight is on the loss's graph. (Some gradients are exactly 0 at the first step by design:
    # Deformable-DETR initialises sampling_offsets/attention_weights to 0, which zeroes the gradient
    # of the pixel decoder's level_embed until those weights move.)
    no_grad = [n for n, t in p.model.named_parameters() if t.requires_grad and t.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad}"
    zero = [n for n, t in p.model.named_parameters() if t.grad is not None and t.grad.abs().sum() == 0]
    assert zero == ["mask_decoder.pixel_decoder.level_embed"] or not zero, zero
    assert {"colormap_encoder", "vision_encoder", "fuser", "mask_decoder", "language_decoder", "associator"} == set(p.model)


def test_binary_mask_encoder_gets_the_masks(scene):
    image, masks = scene
    config = _config(threshold=0.0)
    config["colormap_encoder"] = "binary_mask_pool"
    p = _build(config=config)
    assert p.mask_input_kind == "masks" and p.mask_input(masks).shape == (len(masks), 128, 128)
    g = p.run(image, masks=masks, caption=CAPTION)
    assert len(g.groundings) == 3


def test_colormap_image_feeds_the_image_beside_the_colormap(scene):
    """pipeline.colormap_image: 6 input channels, colormap then the image at mask_size; the encoder
    must be built for 6 channels, and the image must be given."""
    image, masks = scene
    config = _config(threshold=0.0, colormap_image=True)
    config["colormap_encoder"] = {"name": "mobilenetv2", "options": {"in_chans": 6}}
    p = _build(config=config)
    x = p.mask_input(masks, image)
    assert x.shape == (6, 128, 128)
    torch.testing.assert_close(x[:3], p.colormap(masks))
    torch.testing.assert_close(x[3:], p.small_image(image))
    torch.testing.assert_close(x[3:, 5, 5], torch.tensor([120, 170, 250]) / 255.0, atol=1e-3, rtol=0)  # sky
    assert float(x[3:, 100:].abs().sum()) == 0.0                          # padding below the 77-row image
    with pytest.raises(InputError, match="needs the image"):
        p.mask_input(masks)
    assert len(p.run(image, masks=masks, caption=CAPTION).groundings) == 3
    three = _config(colormap_image=True)
    with pytest.raises(CompatibilityError, match="in_chans=6"):
        _build(config=three)


def test_entity_pooling_pools_each_query_over_its_entitys_input_mask(scene):
    image, masks = scene
    config = _config(threshold=0.0, query_matching="hungarian")
    config["mask_decoder"] = {"name": "mask2former", "entity_pooling": True, "silhouette_size": 8}
    p = _build(config=config)
    p.model.eval()
    with torch.no_grad():
        _, out = p.visual_forward(p.vision_encoder.preprocess(image)[None], p.mask_input(masks)[None])
        mapped = p.match_queries(out.masks[0], masks, out.entityness[0])
        grid, shapes = p.entity_grid(masks, out), p.entity_shapes(masks)
        e_vc = p.entity_embeddings(out, [torch.from_numpy(mapped)], [grid], [shapes])
        q = int(np.nonzero(mapped == 2)[0][0])                      # the query of entity index 2
        regions = out.masks.sigmoid().clone()
        regions[0, q] = grid[2]
        given = torch.zeros(1, len(mapped), 64)
        given[0, q] = shapes[2]
        torch.testing.assert_close(e_vc[0, q], p.mask_decoder.pool_regions(out, regions, given)[0, q])
        free = int(np.nonzero(mapped == -1)[0][0])                   # unmapped: its own predicted mask, no shape
        torch.testing.assert_close(e_vc[0, free], p.mask_decoder.pool_regions(out, out.masks.sigmoid(), given)[0, free])
        with pytest.raises(InputError, match="silhouettes"):
            p.entity_embeddings(out, [torch.from_numpy(mapped)], [grid])
    assert grid.shape == (len(masks), *out.masks.shape[-2:]) and float(grid[2].sum()) > 0
    assert len(p.run(image, masks=masks, caption=CAPTION).groundings) == 3


def test_silhouettes_are_box_normalised_shapes():
    from esgkit.pipelines.gella.pipeline import silhouettes

    masks = np.zeros((3, 50, 60), bool)
    masks[0, 10:20, 5:45] = True                # a 10×40 bar: 2 of 8 rows in the middle of its square box
    masks[1, 30:33, 50:53] = True               # a 3×3 square (smaller than the output): fills it
    got = silhouettes(masks, 8).view(3, 8, 8)
    assert got[0].sum(1).tolist() == [0, 0, 0, 8, 8, 0, 0, 0]
    assert bool((got[1] == 1).all()) and float(got[2].sum()) == 0.0   # an empty mask: zeros
    moved = np.roll(masks[:1], (20, 10), axis=(1, 2))
    torch.testing.assert_close(silhouettes(moved, 8), silhouettes(masks[:1], 8))   # position-free


def test_checkpoint_round_trip(pipeline, scene, tmp_path):
    image, masks = scene
    path = tmp_path / "gella.safetensors"
    pipeline.save_checkpoint(path)
    other = _build(seed=1, checkpoint=str(path))
    for key, value in pipeline.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value, msg=key)
    pixels = pipeline.vision_encoder.preprocess(image)[None]
    mask_in = pipeline.mask_input(masks)[None]
    pipeline.model.eval(), other.model.eval()
    with torch.no_grad():
        a, b = pipeline.visual_forward(pixels, mask_in)[1], other.visual_forward(pixels, mask_in)[1]
    torch.testing.assert_close(a.masks, b.masks)


def test_checkpoint_with_missing_or_unexpected_keys_names_them(pipeline, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous().clone() for k, v in pipeline.state_dict().items()}
    gone = "associator.lang.weight"
    del state[gone]
    state["fuser.not_a_weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.safetensors")
    torch.save(state, tmp_path / "bad.pt")
    for f in ("bad.safetensors", "bad.pt"):
        with pytest.raises(CheckpointError) as err:
            pipeline.load_checkpoint(tmp_path / f)
        assert gone in str(err.value) and "fuser.not_a_weight" in str(err.value)


def test_check_names_both_components():
    with pytest.raises(CompatibilityError, match="mask_size"):
        _build(mask_size=100)
    config = _config(mask_size=128)
    config["colormap_encoder"] = {"name": "swin_tiny", "img_size": 256}
    with pytest.raises(CompatibilityError, match=r"colormap_encoder .*img_size 256.*mask_size 128"):
        _build(config=config)
    p = _build()
    p.associator.entity_dim = 999  # as if it had been built for another mask decoder
    with pytest.raises(CompatibilityError, match=r"associator \(FCAssociator\).*mask_decoder \(Mask2FormerMaskDecoder\)"):
        p.check()


def test_mask_size_must_match_the_image(pipeline, scene):
    image, masks = scene
    from esgkit.core import InputError

    with pytest.raises(InputError, match="WxH"):
        pipeline.run(image[:50], masks=masks, caption=CAPTION)


@pytest.fixture(scope="module")
def shapesworld_sample(tmp_path_factory):
    from esgkit.core import get_registry
    from esgkit.datasets.shapesworld import generate

    root = generate(tmp_path_factory.mktemp("shapesworld"), images=1, size=(160, 128), seed=3)
    return get_registry().build("dataset", {"name": "shapesworld", "root": str(root)})[0]


def test_end_to_end_on_a_shapesworld_image(shapesworld_sample):
    sample = shapesworld_sample
    config = _config(threshold=0.0)
    config["language_decoder"] = {"name": "fake", "nouns": ["sky", "grass", "water", "rings", "squares", "star"]}
    p = _build(config=config)
    g = p.run(sample["image"], masks=sample["masks"], caption=sample["caption"].text)
    assert g.masks.image_size == (128, 160) and g.caption.text == sample["caption"].text
    assert g.groundings and {x.phrase.text for x in g.groundings} <= {"sky", "grass", "water", "rings", "squares", "star"}
    known = set(sample["masks"].ids.tolist())
    assert all(set(x.entity_ids) <= known and x.entity_ids for x in g.groundings)
    assert Grounding.from_dict(g.to_dict()).to_dict() == g.to_dict()


# --------------------------------------------------------------------------- the real language decoder
@pytest.fixture(scope="module")
def tiny():
    return build_pipeline("gella_tiny")


def test_tiny_config_with_real_llava_llama_on_shapesworld(tiny, shapesworld_sample):
    sample = shapesworld_sample
    g = tiny.run(sample["image"], masks=sample["masks"], caption=sample["caption"].text)
    assert isinstance(g, Grounding) and len(g.masks) == len(sample["masks"])
    for p in g.groundings:
        assert g.caption.text[p.phrase.start:p.phrase.end] == p.phrase.text


def test_tiny_config_with_real_llava_llama(tiny, scene, tmp_path):
    image, masks = scene
    assert type(tiny.language_decoder).__name__ == "LlavaLlamaDecoder"
    g = tiny.run(image, masks=masks, caption=CAPTION)
    assert isinstance(g, Grounding) and g.caption.text == CAPTION
    for p in g.groundings:  # random weights: any phrases it finds must be cut from the caption
        assert CAPTION[p.phrase.start:p.phrase.end] == p.phrase.text
        assert set(p.entity_ids) <= set(masks.ids.tolist())
    described = tiny.run(image, masks=masks)  # no caption: the LM writes one first
    assert isinstance(described.caption.text, str)
    tiny.write(g, str(tmp_path), image)
    assert Grounding.load(tmp_path / "grounding.json").to_dict() == g.to_dict()


def test_gradients_reach_every_part_with_the_real_language_decoder(tiny, scene):
    """The training path: L_ans from the LM, E_vl at the <SEG> tokens → association logits."""
    image, masks = scene
    p = tiny
    p.model.train()
    p.model.zero_grad()
    z_v, out = p.visual_forward(p.vision_encoder.preprocess(image)[None], p.mask_input(masks)[None])
    phrases = ("circle", "squares", "sky")
    batch = p.language_decoder.collate([p.language_decoder.build_inputs("grounding", CAPTION, phrases, z_v.shape[1])])
    lang = p.language_decoder(z_v, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert lang.seg_embeddings[0].shape[0] == 3  # one E_vl per <SEG>, aligned with the phrases
    logits = p.associator(lang.seg_embeddings[0], out.embeddings[0])
    loss = lang.loss + logits.sigmoid().mean() + out.masks.sigmoid().mean() + out.entityness.square().mean()
    loss = loss + sum(a["masks"].sigmoid().mean() + a["entityness"].square().mean() for a in out.aux)
    loss.backward()
    no_grad = [n for n, t in p.model.named_parameters() if t.requires_grad and t.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad}"
    p.model.zero_grad()
    p.model.eval()


def test_cli_run_writes_grounding_and_overlay(cli, scene, tmp_path):
    from esgkit.core.io import save_id_map_png, save_image

    image, masks = scene
    save_image(tmp_path / "scene.png", image)
    save_id_map_png(tmp_path / "masks.png", masks.to_id_map())
    out = tmp_path / "out"
    result = cli("run", "gella_tiny", "--image", str(tmp_path / "scene.png"), "--masks", str(tmp_path / "masks.png"),
                 "--caption", CAPTION, "--out", str(out), "pipeline.threshold=0.0")
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "grounding.json").read_text())
    assert data["caption"] == CAPTION and len(data["entities"]) == 4
    assert (out / "overlay.png").is_file()
    lines = result.stdout.splitlines()  # the table noun → entities, score, then the files written
    n = len(data["phrases"])  # random weights: the noun extraction may find none
    if n:
        assert lines[0].split() == ["noun", "entities", "score"] and lines[2 + n].startswith("wrote ")
    else:
        assert lines[0].startswith("wrote ") and "esgkit: warning: no noun phrase found" in result.stderr


# --------------------------------------------------------------------------- profile
def test_profile_of_the_paper_config_is_close_to_tables_xi_xii():
    from esgkit.pipelines.gella.profile import format_rows, profile_config

    rows = {r.part: r for r in profile_config("gella_paper")}
    close = lambda ours, paper: abs(ours / paper - 1) <= 0.15  # noqa: E731
    assert close(rows["image encoder"].params_m, 300) and close(rows["mask decoder"].params_m, 21)
    assert close(rows["LLM"].gflops, 11987)                       # FLOPs, as the paper counts the LLM
    assert close(rows["image+mask encoders"].gmacs, 204)          # multiply-adds, as the paper counts these
    assert close(rows["mask decoder"].gmacs, 113)
    assert close(rows["all (paper's mix)"].gflops, 12304)
    assert "GMACs" in format_rows(list(rows.values()))


def test_cli_profile_prints_the_table(cli):
    result = cli("profile", "gella_tiny", "--tokens", "40")
    assert result.returncode == 0, result.stderr
    assert "mask decoder" in result.stdout and "2 FLOPs per multiply-add" in result.stdout


def test_paper_config_builds_on_the_meta_device_and_refuses_to_run():
    with torch.device("meta"):
        paper = build_pipeline("gella_paper")
    assert paper.vision_encoder.grid_size == (24, 24) and paper.vision_encoder.embed_dim == 1024
    assert paper.mask_decoder.config.num_queries == 100 and paper.language_decoder.embed_dim == 4096
    assert 6.9e9 < sum(p.numel() for p in paper.model.parameters()) < 7.3e9
    with pytest.raises(CompatibilityError, match="meta device"):
        paper.run(np.zeros((8, 8, 3), np.uint8))
