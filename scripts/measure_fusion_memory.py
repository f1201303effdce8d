"""Peak memory (RSS) of CropFormer's inference fusion on a large image.

Fuses random smooth mask logits for the full view + 4 crops at the original resolution and prints the
process's peak resident set size. Usage:

    OMP_NUM_THREADS=2 python scripts/measure_fusion_memory.py --size 8192 --queries 100

``--entity-masks`` also expands the result into EntityMasks (N bool masks of H×W: N·H·W bytes more).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from esgkit.components.segmenters.cropformer.crops import view_regions
from esgkit.components.segmenters.cropformer.fusion import fuse_views


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="image side in pixels (square image)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--input", type=int, default=800, help="network input side (short side 800 in the paper)")
    parser.add_argument("--chunk", type=int, default=8, help="queries per chunk")
    parser.add_argument("--entity-masks", action="store_true", help="also build the EntityMasks")
    args = parser.parse_args()

    torch.manual_seed(0)
    feat = args.input // 4
    # Smooth blobs: low-resolution noise upsampled, so masks look like regions rather than speckle.
    coarse = torch.randn(5, args.queries, 6, 6) * 4 - 2
    logits = F.interpolate(coarse, size=(feat, feat), mode="bilinear", align_corners=False)
    scores = torch.rand(args.queries)
    regions = view_regions(args.size, args.size)
    base = peak_rss_mb()
    start = time.perf_counter()
    fused = fuse_views(logits, scores, regions, (args.input, args.input), (args.size, args.size),
                       chunk_queries=args.chunk)
    seconds = time.perf_counter() - start
    kept = len(fused.kept())
    print(f"image {args.size}x{args.size}, {args.queries} queries, 5 views, input {args.input}: "
          f"{kept} masks kept, {seconds:.1f} s")
    print(f"peak RSS before fusion {base:.0f} MB; peak RSS after fusion {peak_rss_mb():.0f} MB")
    if args.entity_masks:
        masks = fused.to_entity_masks()
        print(f"EntityMasks {tuple(masks.masks.shape)}: peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
