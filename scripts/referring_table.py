"""The comparison table of referring systems on one RefCOCO-format split: every row a shipped config
(and the segmenter whose entities it works on), scored by the registered ``rec`` / ``res`` evaluators.

Columns: Acc@0.5 (REC, boxes), cIoU, gIoU, Prec@0.5…0.9 (RES, masks), the referring model's parameters
(the segmenter's not counted) and the seconds per expression (the whole prediction pass — segmentation,
image features, every expression — divided by the number of expressions; for GELLA the pass also
grounds each image's narrative once, which ``predict`` always does). A system that gives no box
(GELLA's RES prompt) has no Acc@0.5. Usage::

    python scripts/referring_table.py --data data/sw --split test [--max-images 50] [--json table.json]
    python scripts/referring_table.py --data data/sw --split test --row "PBREC-MT tiny=pbrec_mt_tiny@sam_tiny"

A row is ``LABEL=CONFIG`` or ``LABEL=CONFIG@SEGMENTER_CONFIG`` (the segmenter section of that config, as
``esgkit eval --segmenter``). Runs on one CPU thread unless ``--threads``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

DEFAULT_ROWS = [
    "PBREC-MT tiny, GT entities=pbrec_mt_tiny",
    "PBREC-MT tiny, CropFormer entities=pbrec_mt_tiny@cropformer_tiny",
    "GELLA tiny RES prompt, GT masks=gella_tiny_trained",
    "GELLA tiny RES prompt, CropFormer masks=gella_tiny_trained@cropformer_tiny",
    "CMPC tiny (one-stage, no proposals)=cmpc_tiny",
    "UniQRNet tiny (box + mask, no proposals)=uniqrnet_tiny",
    "QRNet tiny (box only), masks from GT entities=qrnet_tiny",
    "QRNet tiny (box only), masks from CropFormer entities=qrnet_tiny@cropformer_tiny",
]
COLUMNS = ["Acc@0.5", "cIoU", "gIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9"]
SKIP = {"gella": ("oracle", "nouns", "panoptic")}  # GELLA parts that are not referring


def parse_row(text: str) -> tuple[str, str, str | None]:
    label, sep, target = text.partition("=")
    if not sep or not label.strip() or not target.strip():
        raise SystemExit(f"--row {text!r}: expected LABEL=CONFIG or LABEL=CONFIG@SEGMENTER_CONFIG")
    config, _, segmenter = target.partition("@")
    return label.strip(), config.strip(), segmenter.strip() or None


def parameters(pipeline: Any) -> int:
    """Parameters of the referring model (not its segmenter): the pipeline's ``model`` and, for a frozen
    text encoder kept outside it, that too."""
    modules = [getattr(pipeline, "model", None), getattr(getattr(pipeline, "model", None), "frozen_text", None)]
    seen: set[int] = set()
    total = 0
    for m in modules:
        for p in (m.parameters() if m is not None else ()):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def run_row(label: str, config: str, segmenter: str | None, dataset: Any, max_images: int) -> dict[str, Any]:
    from esgkit.core import build_pipeline, load_config
    from esgkit.core.config import section_of
    from esgkit.core.schema import to_container
    from esgkit.evaluation.run import evaluate

    sections = {"segmenter": section_of(segmenter, "segmenter", "--row")} if segmenter else {}
    cfg = to_container(load_config(config, [], sections=sections))
    pipeline = build_pipeline(cfg)
    n = len(dataset.take(max_images))
    expressions = sum(len(dataset[i].get("refs", [])) for i in range(n))
    start = time.perf_counter()
    metrics = evaluate(pipeline, dataset, max_images=n, skip=SKIP.get(str(cfg["pipeline"]["name"]), ()), progress=False)
    seconds = time.perf_counter() - start
    row = {"system": label, "config": config, "segmenter": segmenter or str(cfg["segmenter"]["name"]),
           "images": n, "expressions": expressions, "params_M": parameters(pipeline) / 1e6,
           "s_per_expression": seconds / max(expressions, 1)}
    row.update({k: metrics.get(k) for k in COLUMNS})
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["system", *COLUMNS, "params M", "s/expr"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["system"], *(f"{100 * r[k]:.1f}" if r.get(k) is not None else "–" for k in COLUMNS),
                 f"{r['params_M']:.1f}", f"{r['s_per_expression']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a ShapesWorld (or RefCOCO-format) data folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dataset", default="shapesworld", help="the reader (esgkit list dataset)")
    parser.add_argument("--max-images", type=int, default=0, help="the first N images (default: all)")
    parser.add_argument("--row", action="append", help="LABEL=CONFIG[@SEGMENTER_CONFIG]; default: PBREC-MT and "
                                                       "GELLA on GT and CropFormer entities, and CMPC")
    parser.add_argument("--json", help="also write the rows to this (new) JSON file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from esgkit.core import get_registry

    torch.set_num_threads(args.threads)
    dataset = get_registry().build("dataset", {"name": args.dataset, "root": args.data, "split": args.split},
                                   key="dataset")
    rows = []
    for text in args.row or DEFAULT_ROWS:
        label, config, segmenter = parse_row(text)
        rows.append(run_row(label, config, segmenter, dataset, args.max_images))
        print(f"{label}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in COLUMNS if rows[-1].get(k) is not None),
              file=sys.stderr)
    print(format_table(rows))
    if args.json:
        from esgkit.core.outputs import atomic_write_json, claim_file

        claim_file(args.json, "referring-table", False, option="--json")
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
