"""The pipelines' commands: ``esgkit demo``, ``esgkit profile`` and ``esgkit convert``.

``esgkit demo`` is the main job on the embedded default — the whole ESG pipeline (``esg_tiny``) on a
ShapesWorld scene:

1. A ShapesWorld scene is generated (deterministic: ``--seed``, 512×512 by default; the default
   generator settings) together with its ground-truth entity masks.
2. The shipped CropFormer (``models/cropformer_tiny/``) segments it into entities — or, with
   ``--gt-masks``, the scene's ground-truth masks are used instead.
3. GELLA (the weights shipped in ``models/gella_tiny/``) describes the image, extracts the nouns of
   its description and grounds each onto those entities — or, with ``--caption``, grounds the nouns
   of the user's caption instead (``--narrative``: the scene's own ShapesWorld narrative, the kind of
   caption the model was trained on).
4. ``esg.png`` (left: every entity found, each outlined in its own palette colour; right: each noun's
   entities outlined in that noun's colour, labelled, with a legend naming each noun once), the two
   panels alone (``entities.png``, ``overlay.png``), ``grounding.json`` (phrases, entity ids, scores,
   COCO-RLE masks) and ``image.png`` are written to ``--out``, and the table noun → entities, score
   (the pipeline's ``summary``, as ``esgkit run`` prints it) is printed. ``--out`` is a new or empty folder, or
   one an earlier demo wrote (rerunning into ``esgkit_demo`` just replaces its files); a folder with
   other files is refused unless ``--overwrite`` (``esgkit.core.outputs``). Each file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from typing import Any

DEFAULT_CONFIG = "esg_tiny"


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("profile", help="parameters and GFLOPs per part of a GELLA (paper Tables XI/XII) or "
                                       "referring config")
    p.add_argument("config", help="a GELLA or referring config file or shipped name (gella_paper, pbrec_mt_paper, "
                                  "cmpc_paper, uniqrnet_paper)")
    p.add_argument("--tokens", type=int, help="sequence length to count: the LLM's for GELLA (default 900), the "
                                              "expression's for a referring config (default 20)")
    p.add_argument("--llm", choices=("auto", "llama7b"), default="auto",
                   help="auto: the config's language decoder if countable on meta, else LLaMA-7B geometry")
    p.add_argument("--json", help="also write the rows to this JSON file (a new file, or one `esgkit profile` wrote)")
    p.add_argument("--overwrite", action="store_true", help="replace --json even when esgkit profile did not write it")
    p.set_defaults(func=cmd_profile, accepts_overrides=True)

    p = sub.add_parser("convert", help="a published checkpoint → esgkit's weights (safetensors) and a config")
    p.add_argument("family", choices=["cropformer"], help="what the checkpoint is: cropformer (the official "
                                                          "release's detectron2 .pth: Swin-L, Swin-T, HorNet-L)")
    p.add_argument("checkpoint", help="the published file")
    p.add_argument("--out", required=True, help="output folder: <family>.safetensors and <family>.yaml")
    p.add_argument("--overwrite", action="store_true", help="write into --out even when it holds other files")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="the main job: the shipped CropFormer segments a ShapesWorld scene, the shipped "
                                    "GELLA describes it and grounds its nouns on those entities")
    p.add_argument("--out", default="esgkit_demo", help="output folder (default: esgkit_demo): new, empty, or one "
                                                       "`esgkit demo` wrote before")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds other files (files of the same name are replaced)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--caption", help="ground the nouns of this caption instead of GELLA's own description")
    which.add_argument("--narrative", action="store_true",
                       help="ground the scene's own ShapesWorld narrative (its ground-truth caption) instead")
    p.add_argument("--seed", type=int, default=0, help="ShapesWorld scene seed (default: 0)")
    p.add_argument("--size", default="512x512", help="scene size WxH (default: 512x512)")
    p.add_argument("--gt-masks", action="store_true",
                   help="ground on the scene's ground-truth masks instead of the segmenter's (segmenter.name=ground_truth)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"GELLA config (default: {DEFAULT_CONFIG})")
    p.set_defaults(func=cmd_demo, accepts_overrides=True)


def demo_scene(seed: int = 0, size: str = "512x512") -> dict[str, Any]:
    """One ShapesWorld scene (default generator settings) as a ``shapesworld`` sample: image, masks,
    caption, description, ..."""
    from esgkit.datasets.shapesworld import ShapesWorldDataset, generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, images=1, seed=seed, size=size, split="demo", image_format="png")
        return ShapesWorldDataset(ShapesWorldDataset.Config(root=tmp, split="demo"))[0]


def side_by_side(left: Any, right: Any) -> Any:
    """Two uint8 pictures next to each other, the shorter padded with white below."""
    import numpy as np

    h = max(left.shape[0], right.shape[0])
    pad = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in (left, right)]
    return np.concatenate(pad, axis=1)


def cmd_demo(args: argparse.Namespace) -> int:
    from esgkit.core import build_pipeline
    from esgkit.core.io import load_image, save_image
    from esgkit.core.outputs import check_folder, claim_folder
    from esgkit.core.text import check_caption
    from esgkit.layers.painting import draw_entities

    user_caption = check_caption(args.caption) if args.caption is not None else None  # before any work
    overwrite = getattr(args, "overwrite", False)
    check_folder(args.out, "demo", overwrite)  # kind `demo` (esgkit.core.outputs); refused before any work
    sample = demo_scene(args.seed, args.size)
    image = sample["image"]
    overrides = [*getattr(args, "overrides", []), *(["segmenter.name=ground_truth"] if args.gt_masks else [])]
    pipeline = build_pipeline(args.config, overrides)
    caption = sample["caption"].text if getattr(args, "narrative", False) else user_caption
    result = pipeline.run(image, sample["masks"], caption=caption, image_id=str(sample["image_id"]))
    folder = claim_folder(args.out, "demo", overwrite)
    out = folder.path
    save_image(out / "image.png", image)  # every file atomically
    paths = pipeline.write(result, str(out), image)
    entities = result.masks
    found = draw_entities(image, list(entities.masks))
    save_image(out / "entities.png", found)
    save_image(out / "esg.png", side_by_side(found, load_image(out / "overlay.png")))
    h, w = image.shape[:2]
    source = "ground-truth masks" if args.gt_masks or type(pipeline.segmenter).__name__ == "GroundTruthSegmenter" \
        else f"the {type(pipeline.segmenter).__name__.removesuffix('Segmenter')} segmenter"
    print(f"ShapesWorld scene (seed {args.seed}, {w}x{h}): {len(entities)} entities from {source} "
          f"(the scene has {len(sample['masks'])} annotated segments)")
    if caption is None:
        print(f"GELLA's description: {result.caption.text!r}")
    else:
        print(f"{'the scene narrative' if getattr(args, 'narrative', False) else 'caption'}: {caption!r}")
    summary = pipeline.summary(result)  # none without a noun phrase: run has warned (stderr)
    if summary:
        print(summary)
    written = [str(out / "image.png"), str(out / "entities.png"), *paths, str(out / "esg.png")]
    folder.record(*written)
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """The official CropFormer release → ``cropformer.safetensors`` (esgkit's key names) and
    ``cropformer.yaml`` (a ``colormap`` config whose ``segmenter`` section rebuilds the release's network
    and names those weights): ``esgkit run`` / ``--segmenter OUT/cropformer.yaml`` take it as it is."""
    from pathlib import Path

    import yaml
    from safetensors.torch import save_file

    from esgkit.components.segmenters.cropformer.official import convert_state, official_geometry
    from esgkit.core.outputs import atomic_path, atomic_write, claim_folder
    from esgkit.layers.weights import read_state_dict

    official = read_state_dict(args.checkpoint, "CropFormer release")  # weights_only; {"model": …} unwrapped
    geometry, state = official_geometry(official), convert_state(official)
    out = claim_folder(args.out, "convert", args.overwrite)
    weights = Path(args.out) / f"{args.family}.safetensors"
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    config = {"pipeline": {"name": "colormap"}, "segmenter": {**geometry, "checkpoint": str(weights.resolve())},
              "colorizer": {"name": "random", "seed": 0}}
    header = (f"# The official CropFormer release {Path(args.checkpoint).name}, converted by `esgkit convert`: "
              "esgkit's CropFormer with the release's geometry\n")
    config_path = atomic_write(Path(args.out) / f"{args.family}.yaml", header + yaml.safe_dump(config, sort_keys=False))
    out.record(weights, config_path)
    print(f"{len(official)} tensors of {args.checkpoint} → {len(state)} in {weights} ({geometry['backbone']}, "
          f"{geometry['num_queries']} queries, {geometry['decoder_layers']} decoder layers); config {config_path}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from esgkit.core import load_config
    from esgkit.core.outputs import atomic_write, claim_file

    from .gella.profile import format_rows, profile_config

    if args.json:  # a JSON list of rows, so no `written_by`: an existing file needs --overwrite
        claim_file(args.json, "profile", getattr(args, "overwrite", False), option="--json")
    cfg = load_config(args.config, getattr(args, "overrides", []))
    if str(cfg.pipeline.name) == "referring":
        from .referring.profile import profile_referring

        rows = profile_referring(cfg, tokens=args.tokens or 20)
        print(format_rows(rows, "the referring seeds (001, 002, 003) give no parameter or FLOP figures"))
    else:
        rows = profile_config(cfg, tokens=args.tokens or 900, llm=args.llm)
        print(format_rows(rows))
    if args.json:
        atomic_write(args.json, json.dumps([asdict(r) | {"gmacs": r.gmacs} for r in rows], indent=1))
    return 0


__all__ = ["DEFAULT_CONFIG", "add_commands", "demo_scene", "side_by_side"]
