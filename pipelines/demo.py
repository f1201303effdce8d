"""``esgkit demo``: the main job on the embedded default.

Currently: the colormap pipeline with the example plugin's ``felzenszwalb`` segmenter on a real
photo shipped with scikit-image (the astronaut), writing the overlay. (Grounding with the shipped
GELLA model replaces this once a trained model ships.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from esgkit.core.errors import InputError


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("demo", help="run the main job on the embedded default")
    p.add_argument("--out", default="esgkit_demo", help="output folder (default: esgkit_demo)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import skimage.data

    from esgkit.core import build_pipeline, get_registry
    from esgkit.core.io import save_image

    if "felzenszwalb" not in get_registry().names("segmenter"):
        raise InputError(
            "the demo uses the example plugin's felzenszwalb segmenter, which is not installed: "
            "pip install -e examples/esgkit-skimage (scripts/install.sh does this)"
        )
    image = np.asarray(skimage.data.astronaut(), np.uint8)
    pipeline = build_pipeline("colormap", ["segmenter.name=felzenszwalb"])
    result = pipeline.run(image, image_id="astronaut")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_image(out / "image.png", image)
    paths = pipeline.write(result, str(out), image)
    areas = result.masks.masks.reshape(len(result.masks), -1).mean(1)
    print(f"felzenszwalb found {len(result.masks)} entities on the astronaut photo "
          f"({image.shape[1]}x{image.shape[0]}); largest covers {areas.max():.0%} of the image")
    for p in paths:
        print(f"wrote {p}")
    return 0
