"""``esgkit data shapesworld OUT``: write the ShapesWorld benchmark.

``OUT`` is claimed as kind ``data`` (``esgkit.core.outputs``): a new or empty folder, or one `esgkit
data` wrote (several splits share it); a folder with other files only with ``--overwrite``. Writing a
split that is already there follows ``datasets/shapesworld_files.py``: the same complete split is
left as it is, another complete one needs ``--overwrite``, an interrupted one is resumed (same
settings) or redone (other settings)."""

from __future__ import annotations

import argparse
import os
import time


def add_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    data = subparsers.add_parser("data", help="make or convert datasets")
    sub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    p = sub.add_parser("shapesworld", help="write the ShapesWorld synthetic benchmark in COCO-panoptic, "
                                           "PNG, RefCOCO and EntitySeg formats")
    p.add_argument("out", help="output folder (several splits may share it)")
    p.add_argument("--images", type=int, default=100, help="number of images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    p.add_argument("--size", default="512x512", help="WxH, 256x256 up to 4096x4096 (default 512x512)")
    p.add_argument("--split", default="val", help="split name used in file names (default val)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores); the output does not depend on it")
    p.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="image files (default jpg)")
    p.add_argument("--overwrite", action="store_true",
                   help="write the split again even when it is complete (replacing one of other settings), or "
                        "write into a folder that holds other files")
    p.set_defaults(func=_shapesworld)


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _shapesworld(args: argparse.Namespace) -> int:
    from esgkit.core.errors import OutputError
    from esgkit.core.outputs import claim_folder

    from .shapesworld import generate, provenance
    from .shapesworld_files import describe, remove_split, split_entries, split_state

    overwrite = getattr(args, "overwrite", False)
    meta = provenance(images=args.images, seed=args.seed, size=args.size, split=args.split,
                      image_format=args.image_format)  # bad settings are refused before anything is written
    folder = claim_folder(args.out, "data", overwrite)
    state, earlier = split_state(folder.path, args.split, meta)
    if state == "complete" and not overwrite:
        print(f"split {args.split} of {folder.path} is already complete with these settings ({describe(meta)}): "
              "nothing to do (add --overwrite to write it again)")
        return 0
    if state == "different" and not overwrite:
        raise OutputError(f"split {args.split} of {folder.path} was written with other settings "
                          f"({describe(earlier or {})}; now {describe(meta)}); add --overwrite to replace it, or "
                          "give another --split or folder")
    if state in ("different", "partial-different") or (state == "complete" and overwrite):
        remove_split(folder.path, args.split)
    elif state == "partial":
        print(f"split {args.split} of {folder.path} was interrupted: resuming (the files already written are kept)")
    folder.record(*split_entries(args.split))
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    out = generate(folder.path, images=args.images, seed=args.seed, size=args.size, split=args.split,
                   workers=max(1, args.workers), image_format=args.image_format, progress=True,
                   resume=state == "partial")
    took, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    # CPU time (this process and its workers) tells the speed apart from other load on the machine
    print(f"wrote {args.images} ShapesWorld images ({args.size}, split {args.split}, seed {args.seed}) "
          f"to {out} in {took:.1f} s ({cpu:.1f} CPU-s, {1000 * cpu / args.images:.0f} CPU-ms per image)")
    return 0
