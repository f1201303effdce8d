"""``esgkit grid`` at tiny sizes: a typo fails before any cell runs; cells share the segmenter's masks;
a failing cell is isolated and reported; ``kill -9`` then ``--resume`` recomputes no done cell and
resumes the interrupted one from its checkpoint, to the same table; ``local`` and ``ray`` agree; the
report (mean ± std over seeds, the paper's numbers, plots)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from esgkit.core.errors import CompatibilityError, ConfigError, InputError
from esgkit.experiments.executors import LocalExecutor, LocalConfig
from esgkit.experiments.grid import export_grid, parse_spec, run_grid, write_report
from esgkit.experiments.grid.report import differences, markdown, table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY_TRAIN = ["pipeline.mask_size=64", "vision_encoder.image_size=64", "mask_decoder.num_queries=12",
              "train.batch_size=2", "train.log_every=1", "train.lr=1e-3", "train.val_split=''", "train.time_budget_min=0",
              "train.subtasks={description: 0.2, nouns: 0.2, grounding: 0.4, res: 0.2}"]
EVAL_SPEC = {"base": "esg_tiny", "skip": ["nouns", "res", "reconstruction"], "metrics": ["AR", "acc@0.5"],
             "grid": {"pipeline.threshold": [0.3, 0.6], "pipeline.min_iou": {"loose": 0.1, "strict": 0.3}}}


@pytest.fixture(scope="module")
def data(tiny_shapesworld):
    return tiny_shapesworld


def local(workers: int = 2) -> LocalExecutor:
    return LocalExecutor(LocalConfig(workers=workers))


def cells(out: Path) -> dict[str, dict]:
    """Cell folder → {status, metrics, label}."""
    found = {}
    for folder in sorted((out / "cells").iterdir()):
        metrics = folder / "metrics.json"
        found[folder.name] = {"status": json.loads((folder / "status.json").read_text()),
                              "label": json.loads((folder / "cell.json").read_text())["label"],
                              "metrics": json.loads(metrics.read_text())["metrics"] if metrics.is_file() else None}
    return found


@pytest.fixture(scope="module")
def eval_grid(data, tmp_path_factory):
    """A 4-cell eval-only grid of GELLA variants on one CropFormer, run with the local executor."""
    out = tmp_path_factory.mktemp("grids") / "local"
    summary = run_grid(parse_spec({**EVAL_SPEC, "data": str(data)}), out, local(), progress=False)
    return out, summary


def test_a_typo_in_one_cell_fails_the_grid_before_any_cell_runs(data, tmp_path):
    spec = parse_spec({"base": "gella_tiny_trained", "data": str(data),
                       "grid": {"pipeline.threshold": [0.3, 0.5],
                                "associator": {"FC": {"name": "fc", "dim": 64}, "Typo": {"name": "fc", "dimm": 64}}}})
    with pytest.raises(ConfigError) as caught:
        run_grid(spec, tmp_path / "g", local(), progress=False)
    message = str(caught.value)
    assert "grid spec grid: 2 of 4 cells are invalid" in message, message
    assert "cell 1 (threshold=0.3 associator=Typo)" in message and "associator.dimm" in message, message
    assert caught.value.key == "associator.dimm"
    assert not (tmp_path / "g").exists(), "nothing may be written when a cell is invalid"


def test_a_misspelled_spec_key_is_named(data):
    with pytest.raises(ConfigError, match="girds.*did you mean 'grid'"):
        parse_spec({"base": "esg_tiny", "data": str(data), "girds": {}})


def test_cells_share_the_segmenters_masks(eval_grid, data):
    out, summary = eval_grid
    assert summary["done"] == 4 and not summary["failed"], summary
    # 2 images segmented once by the masks stage; each of the 4 cells reads both from the cache
    assert summary["cache"]["masks_misses"] == 2 and summary["cache"]["stage_misses"] == 2, summary["cache"]
    assert summary["cache"]["masks_hits"] == 8, summary["cache"]
    assert len(list((out / "cache" / "masks").glob("cropformer-*/*.json"))) == 3  # 2 images + segmenter.json
    found = cells(out)
    assert {c["label"] for c in found.values()} == {f"threshold={t} min_iou={m}" for t in (0.3, 0.6)
                                                     for m in ("loose", "strict")}
    for folder, cell in found.items():
        assert cell["status"]["state"] == "done" and cell["status"]["attempts"] == 1
        cache = json.loads((out / "cells" / folder / "metrics.json").read_text())["cache"]
        assert cache["segmenter_built"] is False, cache  # the cells read the stored masks without a CropFormer
        assert {"config.yaml", "cell.json", "status.json", "log.txt", "metrics.json"} <= \
            {p.name for p in (out / "cells" / folder).iterdir()}
    md = (out / "report.md").read_text()
    assert "| threshold=0.3 min_iou=loose | 1/1 |" in md, md


def test_resume_of_a_finished_grid_recomputes_nothing(eval_grid, data):
    out, first = eval_grid
    before = {f: c["status"] for f, c in cells(out).items()}
    with pytest.raises(Exception, match="--resume"):
        run_grid(parse_spec({**EVAL_SPEC, "data": str(data)}), out, local(), progress=False)
    summary = run_grid(parse_spec({**EVAL_SPEC, "data": str(data)}), out, local(), resume=True, progress=False)
    assert summary["skipped_done"] == 4 and summary["done"] == 4
    # the counts are the grid's, over both runs: the first run's stage work is not forgotten
    assert summary["cache"] == first["cache"] and summary["cache"]["stage_misses"] == 2, summary["cache"]
    assert summary["cache"]["stage_seconds"] > 0, summary["cache"]
    assert {f: c["status"] for f, c in cells(out).items()} == before


def test_rows_run_first_and_the_rest_later_with_resume(data, tmp_path):
    from esgkit.experiments.grid.run import describe

    spec, out = parse_spec({**EVAL_SPEC, "data": str(data)}), tmp_path / "g"
    with pytest.raises(ConfigError, match="no row is labelled 'threshold=0.3 min_iou=lose'.*did you mean "
                                          "'threshold=0.3 min_iou=loose'") as caught:
        run_grid(spec, out, local(), progress=False, rows=["threshold=0.3 min_iou=lose"])
    assert caught.value.key == "--rows" and not out.exists()
    chosen = ["threshold=0.3 min_iou=strict", "threshold=0.6 min_iou=strict"]
    first = run_grid(spec, out, local(), progress=False, rows=chosen)
    assert first["done"] == 2 and first["left"] == 2 and not first["failed"], first  # the rest is not a failure
    assert "2 cells of other rows left pending" in describe(first)
    states = {c["label"]: c["status"]["state"] for c in cells(out).values()}
    assert states == {"threshold=0.3 min_iou=strict": "done", "threshold=0.6 min_iou=strict": "done",
                      "threshold=0.3 min_iou=loose": "pending", "threshold=0.6 min_iou=loose": "pending"}, states
    rest = run_grid(spec, out, local(), progress=False, resume=True)
    assert rest["done"] == 4 and rest["skipped_done"] == 2 and rest["left"] == 0, rest


def test_another_grids_done_cells_are_reused_not_rerun(eval_grid, data, tmp_path):
    out, first = eval_grid
    spec = parse_spec({**EVAL_SPEC, "data": str(data)})
    with pytest.raises(InputError, match="--reuse .*no grid.json"):
        run_grid(spec, tmp_path / "other", local(), progress=False, reuse=[tmp_path])
    summary = run_grid(spec, tmp_path / "again", local(), progress=False, reuse=[out])
    assert summary["done"] == 4 and summary["skipped_done"] == 4 and summary["reused"] == 4, summary
    assert summary["cache"]["masks_misses"] == 0 and summary["cache"]["masks_hits"] == 0, summary["cache"]  # not twice
    for folder, cell in cells(tmp_path / "again").items():
        assert cell["status"]["reused_from"] == str(out / "cells" / folder), cell["status"]
        assert (tmp_path / "again" / "cells" / folder / "metrics.json").read_text() == \
            (out / "cells" / folder / "metrics.json").read_text()
    tables = [(folder / "report.md").read_text().split("\n", 1)[1] for folder in (tmp_path / "again", out)]
    assert tables[0] == tables[1], tables  # the same table under another title
    # spelling out a default (fuser.sa is true unless set) composes other configs, so other folders, but the
    # same computation: --reuse matches the resolved configs too
    spelled = run_grid(parse_spec({**EVAL_SPEC, "data": str(data), "overrides": ["fuser.sa=true"]}),
                       tmp_path / "spelled", local(), progress=False, reuse=[out])
    assert spelled["reused"] == 4 and not set(cells(tmp_path / "spelled")) & set(cells(out)), spelled
    assert {c["label"]: c["metrics"] for c in cells(tmp_path / "spelled").values()} == \
        {c["label"]: c["metrics"] for c in cells(out).values()}
    changed = run_grid(parse_spec({**EVAL_SPEC, "data": str(data), "overrides": ["colorizer.seed=5"]}),
                       tmp_path / "changed", local(), progress=False, reuse=[out])
    assert changed["reused"] == 0 and changed["done"] == 4, changed  # another computation: run


def test_a_failing_cell_is_isolated_and_reported(data, tmp_path, capsys):
    from esgkit.core.cli import main

    spec = {"base": "gella_tiny_trained", "data": str(data), "skip": ["nouns", "res"],
            "grid": {"pipeline.checkpoint": {"shipped": "models/gella_tiny/gella_tiny.safetensors",
                                             "broken": str(tmp_path / "no_such_weights.safetensors")},
                     "pipeline.threshold": [0.4, 0.6]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    code = main(["grid", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "g"), "--workers", "2", "--no-progress"])
    assert code != 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["done"] == 2 and len(summary["failed"]) == 2, summary
    for failed in summary["failed"]:
        assert failed["label"].startswith("checkpoint=broken") and "no_such_weights" in failed["error"], failed
    captured = capsys.readouterr()
    assert "[FAILED] cell" in captured.err and "checkpoint=broken" in captured.err
    assert "not done: cell" in captured.out and "no_such_weights" in captured.out
    states = sorted(c["status"]["state"] for c in cells(tmp_path / "g").values())
    assert states == ["done", "done", "failed", "failed"]


def _train_spec(data: Path, steps: int) -> dict:
    return {"base": "gella_tiny", "do": ["train", "eval"], "data": str(data), "skip": ["nouns", "res"],
            "overrides": [*TINY_TRAIN, f"train.steps={steps}", "train.checkpoint_every=4"],
            "metrics": ["AR_oracle", "acc@0.5"], "grid": {"associator": {"FC": {"name": "fc"}, "MLP": {"name": "mlp"}}}}


STEPS = 24


@pytest.mark.slow
def test_kill_9_then_resume_recomputes_no_done_cell(data, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_train_spec(data, steps=STEPS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    grid = [sys.executable, "-m", "esgkit.core.cli", "grid", str(spec), "--workers", "1", "--no-progress"]
    # the same grid, never interrupted (alongside, to save time)
    clean = subprocess.Popen([*grid, "--out", str(tmp_path / "clean")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen([*grid, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # the first cell done, the second one mid-training with a checkpoint
            folders = sorted((tmp_path / "killed" / "cells").glob("*/status.json")) if (tmp_path / "killed" / "cells").is_dir() else []
            states = {f.parent: json.loads(f.read_text()).get("state") for f in folders if f.stat().st_size}
            running = [f for f, s in states.items() if s == "running" and (f / "train/checkpoints/latest.json").is_file()]
            if running and "done" in states.values():
                break
            assert proc.poll() is None, "the grid ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the grid never reached a running cell with a checkpoint")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    interrupted = running[0]
    done_before = {f.name: json.loads((f / "status.json").read_text()) for f, s in states.items() if s == "done"}
    time.sleep(1.0)  # the orphaned worker notices its parent is gone and exits
    resumed = subprocess.run([*grid, "--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = cells(tmp_path / "killed")
    for name, status in done_before.items():  # 0 completed cells recomputed
        assert after[name]["status"] == status
    assert f"[skip] cell {next(iter(done_before))}" in resumed.stderr
    status = after[interrupted.name]["status"]
    assert status["state"] == "done" and status["attempts"] == 2 and status["resumed_from"].startswith("step_"), status
    steps = [json.loads(line)["step"] for line in (interrupted / "train" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == STEPS and steps.count(steps[0]) == 1
    # the same table as the run that was never interrupted
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-3000:]
    assert (tmp_path / "killed" / "report.csv").read_text() == (tmp_path / "clean" / "report.csv").read_text()


def test_an_export_keeps_the_table_and_resumes_without_recomputing(eval_grid, data, tmp_path):
    out, first = eval_grid
    dest = tmp_path / "export"
    written = export_grid(out, dest)
    kept = {p.relative_to(dest).as_posix() for p in written}
    assert "grid.json" in kept and "report.csv" in kept and any(k.startswith("plots/") for k in kept), kept
    for folder in cells(out):
        assert {f"cells/{folder}/{n}" for n in ("config.yaml", "cell.json", "status.json", "metrics.json")} <= kept
    assert not any(k.endswith("log.txt") or k.startswith("cache/masks") or "/eval/" in k for k in kept), kept
    assert "cache/stages.json" in kept, kept  # the stage's counts, not its masks
    report = (dest / "report.csv").read_text()
    write_report(dest)
    assert (dest / "report.csv").read_text() == report == (out / "report.csv").read_text()
    summary = run_grid(parse_spec({**EVAL_SPEC, "data": str(data)}), dest, local(), resume=True, progress=False)
    assert summary["skipped_done"] == 4 and summary["done"] == 4
    assert summary["cache"] == first["cache"], summary["cache"]  # the export keeps the stage's counts
    with pytest.raises(Exception, match="DEST"):  # an export does not write over a folder that is not a grid's
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("keep")
        export_grid(out, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_local_and_ray_give_the_same_cells_and_metrics(eval_grid, data, tmp_path):
    ray = pytest.importorskip("ray")
    from esgkit.experiments.executors import RayConfig, RayExecutor

    out, _ = eval_grid
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summary = run_grid(parse_spec({**EVAL_SPEC, "data": str(data)}), tmp_path / "ray",
                           RayExecutor(RayConfig()), progress=False)
    finally:
        ray.shutdown()
    assert summary["done"] == 4 and not summary["failed"], summary
    by_ray, by_local = cells(tmp_path / "ray"), cells(out)
    assert set(by_ray) == set(by_local), "both executors must write the same cell folders"
    assert {f: c["metrics"] for f, c in by_ray.items()} == {f: c["metrics"] for f, c in by_local.items()}


def test_ray_missing_says_how_to_install_it(monkeypatch):
    from esgkit.experiments import executors

    monkeypatch.setattr(executors, "ray_available", lambda: False)
    with pytest.raises(CompatibilityError, match=r"pip install 'esgkit\[ray\]'"):
        executors.RayExecutor(executors.RayConfig())


def _fake_grid(root: Path, seeds: list[int] | None, paper: dict) -> Path:
    """A grid folder as `esgkit grid` leaves it, with made-up metrics (one cell not done)."""
    from esgkit.core.outputs import claim_folder

    claim_folder(root, "grid")
    rows = {"CropFormer": [0.5, 0.7], "SAM": [0.2, 0.4]}
    entries = []
    for row, values in rows.items():
        for k, seed in enumerate(seeds or [None]):
            folder = root / "cells" / f"{row}{k}"
            folder.mkdir(parents=True)
            label = row if seed is None else f"{row} seed={seed}"
            entries.append({"folder": folder.name, "label": label, "row": row, "seed": seed})
            state = "failed" if (row, k) == ("SAM", 1) else "done"
            (folder / "status.json").write_text(json.dumps({"state": state}))
            (folder / "metrics.json").write_text(json.dumps({"metrics": {"AR": values[k], "images": 2.0}}))
    (root / "grid.json").write_text(json.dumps({"name": "fake", "cells": entries, "seeds": seeds, "paper": paper,
                                                "metrics": []}))
    return root


def test_report_mean_std_over_seeds_and_the_papers_numbers(tmp_path):
    from PIL import Image

    out = _fake_grid(tmp_path / "g", seeds=[0, 1], paper={"CropFormer": {"AR": 0.65}})
    written = write_report(out)
    md = (out / "report.md").read_text()
    assert "| cell | cells done | AR | AR (paper) |" in md, md
    assert "| CropFormer | 2/2 | 0.6000 ± 0.1414 | 0.6500 |" in md, md
    assert "| SAM | 1/2 | 0.2000 ± 0.0000 | — |" in md, md
    lines = (out / "report.csv").read_text().splitlines()
    assert lines[0] == "cell,n,done,AR_mean,AR_std,AR_paper"
    assert lines[1].startswith("CropFormer,2,2,0.6") and lines[1].endswith(",0.65")
    plot = out / "plots" / "AR.png"
    assert plot in written and Image.open(plot).size[0] > 100


def test_report_compares_each_row_with_the_baseline_by_the_seed_gap_rule(tmp_path):
    out = _fake_grid(tmp_path / "g", seeds=[0, 1], paper={"CropFormer": {"AR": 0.65}, "SAM": {"AR": 0.70}})
    grid = json.loads((out / "grid.json").read_text())
    entries = []
    rows = {"M2F": [0.9, 0.95], "Tie": [0.55, 0.75], "Empty": [None, None]}  # M2F: +0.325 beyond both gaps
    for row, values in rows.items():
        for k in (0, 1):
            folder = out / "cells" / f"{row}{k}"
            folder.mkdir()
            (folder / "status.json").write_text(json.dumps({"state": "done"}))
            (folder / "metrics.json").write_text(json.dumps({"metrics": {"AR": values[k]}}))
            entries.append({"folder": folder.name, "label": f"{row} seed={k}", "row": row, "seed": k})
    grid["cells"] += entries
    grid["paper"] |= {"M2F": {"AR": 0.60}, "Tie": {"AR": 0.652}}
    (out / "grid.json").write_text(json.dumps(grid))
    t = table(out)
    assert t["baseline"] == "CropFormer"  # no baseline: the first row
    found = {d["row"]: d["AR"] for d in differences(t)}
    assert found["SAM"] is None  # one seed done: no gap to judge by
    assert found["M2F"]["verdict"] == "contradicted" and found["M2F"]["gap"] == pytest.approx(0.2)
    assert found["M2F"]["ours"] == pytest.approx(0.325) and found["M2F"]["paper"] == pytest.approx(-0.05)
    assert found["Tie"]["verdict"] == "no difference, as the paper"  # +0.05 within 0.2; paper +0.002
    md = markdown(t)
    assert "| M2F | +0.325 (gap 0.200; paper -0.050): contradicted |" in md, md
    assert "| SAM | — (needs two seeds) |" in md, md
    assert found["Empty"] == {"verdict": "no value"} and "| Empty | — (no value) |" in md, md  # two seeds, no AR
    grid["baseline"] = "M2F"
    (out / "grid.json").write_text(json.dumps(grid))
    found = {d["row"]: d["AR"] for d in differences(table(out))}
    assert set(found) == {"CropFormer", "SAM", "Tie", "Empty"} and found["CropFormer"]["verdict"] == "contradicted"


@pytest.mark.parametrize("ours, gap, paper, verdict", [
    (0.10, 0.05, 0.02, "confirmed"), (-0.10, 0.05, 0.02, "contradicted"), (0.10, 0.05, 0.004, "higher (paper: tie)"),
    (-0.10, 0.05, None, "lower"), (0.03, 0.05, 0.02, "not resolved"), (0.03, 0.05, -0.005, "no difference, as the paper"),
    (-0.03, 0.05, None, "no difference")])
def test_the_verdict_rule(ours, gap, paper, verdict):
    from esgkit.experiments.grid.report import _verdict

    assert _verdict(ours, gap, paper) == verdict


@pytest.mark.parametrize("key, value, named", [("baseline", "threshold=0.05", "baseline"),
                                               ("paper", {"treshold=0.5": {"AR": 0.5}}, "paper.treshold=0.5")])
def test_a_row_label_no_row_has_is_refused_with_the_closest(data, key, value, named):
    with pytest.raises(ConfigError, match="no row is labelled .*did you mean 'threshold=0.5'") as caught:
        parse_spec({"base": "gella_tiny_trained", "data": str(data), "grid": {"pipeline.threshold": [0.3, 0.5]},
                    key: value})
    assert caught.value.key == named


def test_a_zip_group_walks_its_lists_together_under_its_label(data):
    from esgkit.experiments.grid import compose

    spec = parse_spec({"base": "pbrec_mt_tiny", "data": str(data), "zip": [
        {"label": "model", "names": ["grounding", "both"], "train.lambda_mass": [0, 1], "referrer.mask_head": ["center", "mass"]}],
        "grid": {"referrer.top_k": [1, 12]}})
    cells = compose(spec)
    assert [c.label for c in cells] == ["top_k=1 model=grounding", "top_k=1 model=both",
                                        "top_k=12 model=grounding", "top_k=12 model=both"]
    first = cells[0].config
    assert first["train"]["lambda_mass"] == 0 and first["referrer"]["mask_head"] == "center"
    with pytest.raises(ConfigError, match="one length"):
        parse_spec({"base": "pbrec_mt_tiny", "data": str(data), "zip": [{"train.lambda_mass": [0, 1], "referrer.top_k": [1]}]})


def test_subsets_score_every_cell_again_under_the_readers_options(data, tmp_path):
    """``subsets``: each cell is evaluated on the whole split and on each named reader option (here
    ShapesWorld's relational and other expressions), metrics prefixed by the subset's name; a spec
    without subsets keeps its cells' hashes."""
    spec = parse_spec({"base": "pbrec_mt_tiny", "data": str(data), "split": "val", "metrics": ["cIoU", "relational/cIoU"],
                       "subsets": {"relational": {"expressions": "relational"}, "other": {"expressions": "other"}}})
    summary = run_grid(spec, tmp_path / "g", local(1), progress=False)
    assert summary["done"] == 1, summary
    (cell,) = cells(tmp_path / "g").values()
    m = cell["metrics"]
    assert {"cIoU", "relational/cIoU", "other/cIoU", "relational/Acc@0.5"} <= set(m), sorted(m)
    folder = next((tmp_path / "g" / "cells").iterdir())
    scored = {name: len(json.loads((folder / sub / "res_pred.json").read_text()))
              for name, sub in (("all", "eval"), ("relational", "eval_relational"), ("other", "eval_other"))}
    assert scored["relational"] >= 1 and scored["relational"] + scored["other"] == scored["all"], scored
    assert "relational/cIoU" in (tmp_path / "g" / "report.md").read_text()
    assert "subsets" not in parse_spec({"base": "pbrec_mt_tiny", "data": str(data)}).on.identity()
    with pytest.raises(ConfigError, match="subsets"):
        parse_spec({"base": "pbrec_mt_tiny", "data": str(data), "subsets": {"relational": "expressions=relational"}})


def test_shipping_a_trained_model_does_not_re_key_its_training_cells(tmp_path):
    """A training cell replaces the pipeline's weights with its own: their hash is not its identity (so
    copying a cell's weights into models/ keeps the grid's folders); an evaluation cell's still is."""
    from esgkit.experiments.grid import cells
    from esgkit.experiments.grid.cells import digest, identity

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    config = {"pipeline": {"name": "referring", "checkpoint": str(weights)}, "referrer": {"name": "cmpc"}}
    before = {tuple(do): digest(identity(config, {"do": do})) for do in (["train", "eval"], ["eval"])}
    weights.write_bytes(b"two")
    cells._FILE_HASHES.clear()
    after = {tuple(do): digest(identity(config, {"do": do})) for do in (["train", "eval"], ["eval"])}
    assert before[("train", "eval")] == after[("train", "eval")] and before[("eval",)] != after[("eval",)]


def test_a_model_folder_named_by_the_config_keys_the_cell(tmp_path):
    """A Hugging Face folder (segmenter.checkpoint of mask2former, a LLaVA or BERT folder) is hashed
    like a weights file: new weights in it give the cell a new folder; an unrelated file does not."""
    from esgkit.experiments.grid import cells
    from esgkit.experiments.grid.cells import digest, identity

    folder = tmp_path / "mask2former-swin-large-coco-panoptic"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "mask2former"}')
    (folder / "model.safetensors").write_bytes(b"one")
    config = {"segmenter": {"name": "mask2former", "checkpoint": str(folder)}}
    before = digest(identity(config, {"do": ["eval"]}))
    (folder / "README.md").write_text("notes")
    cells._FILE_HASHES.clear()
    assert digest(identity(config, {"do": ["eval"]})) == before
    (folder / "model.safetensors").write_bytes(b"two")
    cells._FILE_HASHES.clear()
    assert digest(identity(config, {"do": ["eval"]})) != before
