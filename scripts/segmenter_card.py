"""Regenerates the measured parts of the segmenters' model card (``models/cropformer_tiny/README.md``),
so that no figure or picture in it is edited by hand and none goes stale when a model is retrained.

The card marks each generated part::

    <!-- generated: NAME (scripts/segmenter_card.py) -->
    ...
    <!-- end generated: NAME -->

and this script rewrites what lies between the markers:

    table_vi   the side-by-side table and the paper's claims, from the JSON that
               ``scripts/benchmark_cropformer.py --json`` wrote (``--benchmark``)
    example    the ESG example scene (ShapesWorld, 512², seed 11, its third image, with its narrative): the
               shipped ``esg_tiny`` (CropFormer → GELLA) on ground-truth, CropFormer and tiny-SAM masks
               (each segmenter's shipped config), the pictures written to ``--images-dir`` and, per
               segmenter, the entities found and each phrase with the annotated phrase it matches

    python scripts/segmenter_card.py                 # rewrite the card and its pictures
    python scripts/segmenter_card.py --check         # exit 1 when a generated part is stale (pictures aside)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from generated_blocks import blocks, write_or_check  # scripts/generated_blocks.py

SCRIPT = "segmenter_card"
ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "cropformer_tiny" / "README.md"
BENCHMARK = ROOT / "models" / "cropformer_tiny" / "benchmark.json"
IMAGES = ROOT / "docs" / "images"
EXAMPLE_SEGMENTERS = (("ground_truth", "ground truth", None), ("cropformer", "CropFormer", "cropformer_tiny"),
                      ("sam", "tiny SAM", "sam_tiny"))
CLAIMS = (  # (what, ratio key, target text, met?)
    ("APe-H, CropFormer − Mask2Former at the same input (paper +1.5)", "APe_H_gap_vs_mask2former", "≥ +1.5",
     lambda v: v >= 1.5, "{:+.1f}"),
    ("APe-H, CropFormer − Mask2Former at full resolution (paper +0.1)", "APe_H_gap_vs_hr", "≥ 0", lambda v: v >= 0, "{:+.1f}"),
    ("time, CropFormer / Mask2Former at full resolution (paper 0.45×)", "time_ratio_vs_hr", "≤ 0.45×",
     lambda v: v <= 0.45, "{:.2f}×"),
    ("inference memory, CropFormer / Mask2Former at full resolution (paper 0.66×)", "memory_ratio_vs_hr", "≤ 0.6×",
     lambda v: v <= 0.6, "{:.2f}×"),
)


def render_table_vi(benchmark: Path) -> str:
    """The settings table and the claims, from a benchmark JSON."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark_cropformer import table

    data = json.loads(benchmark.read_text())
    results, ratios = data["results"], data["ratios"]
    first = next(iter(results.values()))
    lines = [f"`scripts/benchmark_cropformer.py` on {first['images']} images of {first['image_size'][1]}×"
             f"{first['image_size'][0]} (`{Path(data['args']['data']).name}`, split `{data['args']['split']}`), "
             f"one CPU thread per setting, each in its own process ({data['args'].get('jobs', 1)} at a time); "
             f"the full output is `{benchmark.name}`.", "",
             table(results), "", "| claim | target | measured | met? |", "|---|---|---|---|"]
    for what, key, target, met, fmt in CLAIMS:
        if key in ratios:
            lines.append(f"| {what} | {target} | {fmt.format(ratios[key])} | {'yes' if met(ratios[key]) else '**no**'} |")
    if "cropformer" in results:
        ape = results["cropformer"]["APe_H"]
        lines.append(f"| CropFormer APe-H | ≥ 50 | {ape:.1f} | {'yes' if ape >= 50 else '**no**'} |")
    if "sam" in results:
        empty = results["sam"].get("images_without_entities", 0)
        lines.append(f"| images where the shipped SAM preset finds no entity | 0 | {empty} | {'yes' if empty == 0 else '**no**'} |")
    return "\n".join(lines) + "\n"


def example_scene() -> dict[str, Any]:
    from esgkit.datasets.shapesworld import ShapesWorldDataset, generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, images=3, seed=11, size="512x512", split="val", image_format="png")
        return ShapesWorldDataset(ShapesWorldDataset.Config(root=tmp, split="val"))[2]


def phrase_matches(result: Any, sample: dict[str, Any]) -> list[tuple[str, int, float | None]]:
    """(phrase, entities grounded, IoU of their union with the annotated phrase's segments) per grounded
    phrase; IoU None where the phrase is not one of the narrative's annotated phrases (same span)."""
    import numpy as np

    spans = {(p.start, p.end): segs for p, segs in zip(sample["caption"].phrases, sample["phrase_segments"])}
    gt = sample["masks"]
    pos = {int(i): k for k, i in enumerate(result.masks.ids)}
    rows = []
    for g in result.groundings:
        found = np.zeros(gt.image_size, bool)
        for e in g.entity_ids:
            found |= result.masks.masks[pos[int(e)]]
        segs = spans.get((g.phrase.start, g.phrase.end))
        iou = None
        if segs is not None:
            wanted = np.zeros(gt.image_size, bool)
            for s in segs:
                wanted |= gt.masks[list(gt.ids).index(s)]
            union = (found | wanted).sum()
            iou = float((found & wanted).sum() / union) if union else 1.0
        rows.append((g.phrase.text, len(g.entity_ids), iou))
    return rows


def render_example(images_dir: Path) -> str:
    """Run esg_tiny on the example scene with each segmenter; write the pictures; describe the results."""
    from esgkit.core import build_pipeline, load_config
    from esgkit.core.schema import to_container

    sample = example_scene()
    image, caption = sample["image"], sample["caption"].text
    lines = [f"`esg_tiny` on a 512² ShapesWorld scene (val, seed 11, image 3; {len(sample['masks'])} annotated "
             f"segments) with its narrative (\"{caption[:120]}…\", {len(sample['caption'].phrases)} annotated phrases), "
             "the shipped GELLA on each segmenter's masks, each segmenter with its shipped config and weights:", ""]
    images_dir.mkdir(parents=True, exist_ok=True)
    for name, title, config in EXAMPLE_SEGMENTERS:
        sections = {"segmenter": to_container(load_config(config))["segmenter"]} if config else {"segmenter": {"name": name}}
        pipeline = build_pipeline(to_container(load_config("esg_tiny", sections=sections)))
        result = pipeline.run(image, sample["masks"], caption=caption, image_id=str(sample["image_id"]))
        with tempfile.TemporaryDirectory() as tmp:
            pipeline.write(result, tmp, image)
            picture = images_dir / f"esg_tiny_{name}.png"
            picture.write_bytes((Path(tmp) / "overlay.png").read_bytes())
        rows = phrase_matches(result, sample)
        right = sum(1 for _, _, iou in rows if iou is not None and iou >= 0.5)
        scored = sum(1 for _, _, iou in rows if iou is not None)
        lines.append(f"- **{title}** ({len(result.masks)} {'entity' if len(result.masks) == 1 else 'entities'}; [picture](../../docs/images/{picture.name})): "
                     f"{len(rows)} phrases grounded, {right} of the {scored} annotated ones on the right entities "
                     "(IoU ≥ 0.5 with the annotated segments): "
                     + "; ".join(f"\"{p}\" → {n} ({'–' if iou is None else f'IoU {iou:.2f}'})" for p, n, iou in rows) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", type=Path, default=CARD)
    ap.add_argument("--benchmark", type=Path, default=BENCHMARK)
    ap.add_argument("--images-dir", type=Path, default=IMAGES)
    ap.add_argument("--only", default="", help="comma-separated blocks to regenerate (default: all)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    args = ap.parse_args(argv)
    present = list(blocks(args.card.read_text(), SCRIPT))
    if not present:
        ap.error(f"{args.card} has no generated block (<!-- generated: NAME (scripts/segmenter_card.py) -->)")
    wanted = [b.strip() for b in args.only.split(",") if b.strip()] or present
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) if args.check else args.images_dir  # --check writes no picture of the project
        renderers = {"table_vi": lambda: render_table_vi(args.benchmark), "example": lambda: render_example(images)}
        unknown = [b for b in wanted if b not in renderers or b not in present]
        if unknown:
            ap.error(f"no generated block {unknown} in {args.card}; it has {present}")
        renders = {b: renderers[b]() for b in wanted}
    status = write_or_check(args.card, SCRIPT, renders, args.check, what="generated blocks")
    if args.check:
        return status
    print(f"rewrote {wanted} in {args.card}" + (f"; pictures in {args.images_dir}" if "example" in wanted else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
