"""`esgkit score`: the ShapesWorld → readers → oracle predictions → score round trip, JSON output,
options, and errors printed without a traceback."""

from __future__ import annotations

import argparse
import json

import pytest

from esgkit.core.errors import ConfigError, UnknownComponentError
from esgkit.evaluation import cli
from esgkit.evaluation.oracle import oracle_predictions

GT = {
    "png": "annotations/png_coco_val.json",
    "res": "refcoco_val/refs(unc).p",
    "rec": "refcoco_val",
    "entity": "annotations/entityseg_val.json",
    "panoptic": "annotations/panoptic_val.json",
}


def _run(argv):
    """Parse like `esgkit` does (key=value words become overrides) and run, letting errors rise."""
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    args, extra = parser.parse_known_args(argv)
    args.overrides = extra
    return args.func(args)


@pytest.mark.parametrize("task", sorted(GT))
def test_shapesworld_round_trip_scores_one(sw_root, tmp_path, task, capsys):
    gt = sw_root / GT[task]
    pred = oracle_predictions(task, gt, tmp_path / f"{task}.json")
    out = tmp_path / "metrics.json"
    assert _run(["score", task, "--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics and all(v == 1.0 for v in metrics.values() if v is not None), metrics
    printed = capsys.readouterr().out
    assert next(iter(metrics)) in printed and "1.0000" in printed


def test_options_reach_the_evaluator(sw_root, tmp_path):
    gt = sw_root / GT["res"]
    pred = oracle_predictions("res", gt, tmp_path / "res.json")
    out = tmp_path / "m.json"
    assert _run(["score", "res", "--gt", str(gt), "--pred", str(pred), "split=val", "--out", str(out)]) == 0
    from esgkit.core.errors import InputError

    with pytest.raises(InputError, match="no refs of split 'test'"):
        _run(["score", "res", "--gt", str(gt), "--pred", str(pred), "split=test"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        _run(["score", "res", "--gt", str(gt), "--pred", str(pred), "split"])
    with pytest.raises(UnknownComponentError, match="did you mean|Did you mean"):
        _run(["score", "pngg", "--gt", str(gt), "--pred", str(pred)])


def test_cli_prints_errors_without_traceback(sw_root, tmp_path, cli):
    (tmp_path / "bad.json").write_text("{not json")
    result = cli("score", "png", "--gt", str(sw_root / GT["png"]), "--pred", str(tmp_path / "bad.json"))
    assert result.returncode != 0
    assert "bad.json: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_pipeline_style_predictions_from_groundings(sw_root, tmp_path):
    """A Grounding per sample → png_predictions → scored: the ground-truth grounding gives 1.0,
    dropping every plural phrase's second entity lowers AR_pl only."""
    from esgkit.core import Grounding, PhraseGrounding
    from esgkit.datasets.png import ground_truth_grounding
    from esgkit.datasets.shapesworld import ShapesWorldDataset
    from esgkit.datasets.png import png_predictions
    from esgkit.evaluation.png import PNGEvaluator

    ds = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(sw_root)))
    perfect, partial = [], []
    for sample in ds:
        g = ground_truth_grounding(sample)
        perfect += png_predictions(sample, g)
        cut = Grounding(g.caption, tuple(PhraseGrounding(x.phrase, x.entity_ids[:1], x.scores[:1]) for x in g.groundings), g.masks)
        partial += png_predictions(sample, cut)
    gt = str(sw_root / GT["png"])
    (tmp_path / "a.json").write_text(json.dumps(perfect))
    (tmp_path / "b.json").write_text(json.dumps(partial))
    ev = PNGEvaluator(PNGEvaluator.Config())
    assert all(v == 1.0 for v in ev.score(gt, str(tmp_path / "a.json")).values())
    m = ev.score(gt, str(tmp_path / "b.json"))
    assert m["AR_sing"] == 1.0 and m["AR_pl"] < 0.8 and m["AR"] < 1.0
