"""How a segmenter's entity masks get the annotated segments wrong, by segment size — and how the
training augmentation of GELLA (``train.mask_augment``) imitates it. One table per mask source:

    python scripts/segmenter_errors.py --data data/sw --split train --images 40 --segmenter cropformer_tiny --augment

Each annotated segment is ``good`` / ``coarse`` / ``split`` / ``merged`` / ``missed``
(``layers/overlap.segment_errors``); sizes are small (< 0.5 % of the image), mid (< 5 %) and large.
The segmenter runs through the on-disk mask cache (``pipelines/segment_cache.py``).
"""

from __future__ import annotations

import argparse
import collections

import numpy as np

from esgkit.core import get_registry, load_config
from esgkit.core.schema import to_container
from esgkit.datasets.shapesworld import ShapesWorldDataset
from esgkit.layers.overlap import ERROR_KINDS, segment_errors
from esgkit.pipelines.segment_cache import cached_segmenter
from esgkit.training.mask_augment import MaskNoise, perturb_masks

SIZES = (("small", 0.005), ("mid", 0.05), ("large", 1.01))


def size_of(share: float) -> str:
    return next(name for name, top in SIZES if share < top)


def table(title: str, rows: collections.Counter, masks: int, segments: int) -> None:
    print(f"\n{title}: {masks} masks for {segments} segments")
    print(f"{'size':6s}" + "".join(f"{k:>8s}" for k in ERROR_KINDS))
    for size, _ in SIZES:
        print(f"{size:6s}" + "".join(f"{rows[size, k]:8d}" for k in ERROR_KINDS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--segmenter", default="cropformer_tiny", help="a config whose segmenter makes the masks")
    ap.add_argument("--augment", action="store_true", help="also tabulate train.mask_augment's default noise")
    ap.add_argument("--seed", type=int, default=0, help="the augmentation's random seed")
    args = ap.parse_args()

    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=args.data, split=args.split))
    section = to_container(load_config(args.segmenter))["segmenter"]
    segmenter = cached_segmenter(get_registry().build("segmenter", section, key="segmenter"))
    rng = np.random.default_rng(args.seed)
    sources = {args.segmenter: lambda s: segmenter.segment(s["image"], s["masks"]).masks}
    if args.augment:
        sources["train.mask_augment (MaskNoise defaults)"] = lambda s: perturb_masks(s["masks"].masks, rng, MaskNoise())
    for title, masks_of in sources.items():
        rows: collections.Counter = collections.Counter()
        n_masks = n_segments = 0
        for i in range(min(args.images, len(dataset))):
            sample = dataset[i]
            gt = sample["masks"].masks
            masks = masks_of(sample)
            shares = gt.reshape(len(gt), -1).mean(1)
            for share, kind in zip(shares, segment_errors(masks, gt)):
                rows[size_of(float(share)), kind] += 1
            n_masks, n_segments = n_masks + len(masks), n_segments + len(gt)
        table(title, rows, n_masks, n_segments)


if __name__ == "__main__":
    main()
