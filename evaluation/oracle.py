"""Oracle predictions: the ground truth written in each task's prediction format.

Scoring them must give 1.0 on every metric, which checks reader, format and metric together; they
are also worked examples of the prediction formats in docs/formats.md."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.types import encode_rle
from esgkit.datasets.common import write_json
from esgkit.datasets.png import read_narratives

TASKS = ("png", "res", "rec", "entity", "panoptic")


def oracle_predictions(task: str, gt: str | Path, out: str | Path, **options: Any) -> Path:
    """Write the GT of ``gt`` as a ``task`` prediction file at ``out``; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if task == "png":
        from .png import PNGEvaluator

        ev = PNGEvaluator(PNGEvaluator.Config(**options))
        panoptic = ev._panoptic(Path(gt))
        preds = []
        for n in read_narratives(gt):
            id_map = panoptic.id_map(n.image_id)
            for p, ids in enumerate(n.phrase_segments):
                preds.append({"image_id": n.image_id, "narrative_index": n.index, "phrase_index": p,
                              "segmentation": encode_rle(np.isin(id_map, ids))})
        write_json(out, preds)
    elif task in ("res", "rec"):
        from .referring import ref_index

        index = ref_index(str(gt), options.get("split", ""), options.get("instances_json", ""))
        if task == "res":
            write_json(out, [{"sent_id": s["sent_id"], "segmentation": encode_rle(index.ann_mask(s["ann_id"]))}
                             for s in index.sentences])
        else:
            write_json(out, [{"sent_id": s["sent_id"], "bbox": s["bbox"]} for s in index.sentences])
    elif task == "entity":
        from esgkit.datasets.entityseg import InstancesIndex

        data = InstancesIndex(gt, "ground-truth JSON").data  # checked: every annotation has what is copied
        write_json(out, [{"image_id": a["image_id"], "category_id": a.get("category_id", 1),
                          "segmentation": a["segmentation"], "score": 1.0} for a in data["annotations"]])
    elif task == "panoptic":
        gt = Path(gt)
        shutil.copyfile(gt, out)
        dst = out.with_suffix("")
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(options.get("gt_dir") or gt.with_suffix(""), dst)
    else:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    return out
