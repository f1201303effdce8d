"""GELLA forward time against the number of entities: the colormap path (one colormap, whatever N)
against the Table XIX binary-mask alternative (one backbone pass per entity).

Measured ("forward"): the visual half of the tiny GELLA (CLIP, colormap encoder, ResoBlend,
Mask2Former decoder) on a prepared mask input (the colormap, or the N resized masks) + mapping the
queries back to the N entities. The script also prints "end to end", which adds building the mask
input (the colorizer's colour sampling and painting, or resizing the N masks). The language
decoder is left out: its cost does not depend on N.

    pytest tests/benchmarks/test_gella_entities.py --benchmark-enable     # pytest-benchmark tables
    python tests/benchmarks/test_gella_entities.py                         # prints both curves
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

COUNTS = (1, 10, 50, 200)
PATHS = ("mobilenetv2", "binary_mask_pool")  # colormap path, binary-mask alternative


def grid_masks(n: int, size: int = 128) -> tuple[np.ndarray, object]:
    """An image split into n entities (cells of a near-square grid)."""
    from esgkit.core import EntityMasks

    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    yy, xx = np.mgrid[:size, :size]
    ids = (yy * rows // size) * cols + (xx * cols // size) + 1
    ids[ids > n] = 0
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return image, EntityMasks.from_id_map(ids)


def build(encoder: str):
    import esgkit  # noqa: F401
    from esgkit.core import build_pipeline

    torch.manual_seed(0)
    return build_pipeline("gella_tiny", [f"colormap_encoder.name={encoder}"]
                          + (["colormap_encoder.backbone=mobilenetv2_035"] if encoder != "mobilenetv2" else []))


def make_forward(pipeline, n: int, with_inputs: bool = False):
    image, masks = grid_masks(n)
    pixels = pipeline.vision_encoder.preprocess(image)[None]
    prepared = pipeline.mask_input(masks)[None]
    pipeline.model.eval()

    def forward():
        with torch.no_grad():
            mask_in = pipeline.mask_input(masks)[None] if with_inputs else prepared
            _, out = pipeline.visual_forward(pixels, mask_in)
            return pipeline.match_queries(out.masks[0], masks)

    return forward


@pytest.fixture(scope="module", params=PATHS)
def pipeline(request):
    return request.param, build(request.param)


@pytest.mark.parametrize("n", COUNTS)
def test_forward_time_vs_entities(benchmark, pipeline, n):
    path, p = pipeline
    benchmark.group = f"GELLA tiny forward, {path}"
    benchmark.extra_info["entities"] = n
    match = benchmark.pedantic(make_forward(p, n), rounds=5, iterations=1, warmup_rounds=1)
    assert match.shape == (p.mask_decoder.config.num_queries,)


def curves(repeats: int = 9) -> dict[tuple[str, bool], dict[int, float]]:
    """Median milliseconds per call, per (path, with_inputs) and entity count."""
    torch.set_num_threads(1)
    result: dict[tuple[str, bool], dict[int, float]] = {}
    for path in PATHS:
        p = build(path)
        for with_inputs in (False, True):
            row = result[(path, with_inputs)] = {}
            for n in COUNTS:
                fn = make_forward(p, n, with_inputs)
                fn()
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                row[n] = 1000 * statistics.median(times)
    return result


if __name__ == "__main__":
    table = curves()
    keys = list(table)
    names = [f"{p} {'end to end' if w else 'forward'}" for p, w in keys]
    print("median ms per image, 1 thread, tiny GELLA (128² colormap, 64² CLIP input)")
    print(f"{'entities':>8s} " + " ".join(f"{n:>28s}" for n in names))
    for n in COUNTS:
        print(f"{n:8d} " + " ".join(f"{table[k][n]:28.1f}" for k in keys))
    print(f"{'200 / 1':>8s} " + " ".join(f"{table[k][200] / table[k][1]:27.2f}x" for k in keys))
