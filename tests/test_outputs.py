"""Output safety (esgkit.core.outputs): no command overwrites the user's files, and nothing half-written
looks complete — atomic files, claimed output folders, ``--overwrite``, and ``kill -9`` then rerun for
``esgkit train`` and ``esgkit data shapesworld``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from esgkit.core.cli import main
from esgkit.core.errors import OutputError
from esgkit.core.outputs import (MANIFEST, PART, atomic_path, atomic_write, check_folder, claim_file, claim_folder,
                                 written_by_tag)

# gella_tiny shrunk so that a step takes milliseconds (as tests/training/tasks/test_gella.py)
TINY_TRAIN = ["pipeline.mask_size=64", "vision_encoder.image_size=64", "mask_decoder.num_queries=12",
              "train.batch_size=2", "train.log_every=1", "train.lr=1e-3", "train.val_split=''",
              "train.subtasks={description: 0.2, nouns: 0.2, grounding: 0.4, res: 0.2}"]


def _digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def _parts(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if PART.match(p.name)]


def _error(capsys) -> str:
    """The one error line the last command printed (no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("esgkit: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def data(tiny_shapesworld):
    return tiny_shapesworld


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data):
    """An image and its entity id-map, for `esgkit run colormap` with ground-truth masks (no model)."""
    from esgkit.core.io import save_id_map_png, save_image
    from esgkit.datasets.shapesworld import ShapesWorldDataset

    folder = tmp_path_factory.mktemp("scene")
    sample = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(data), split="val"))[0]
    save_image(folder / "scene.png", sample["image"])
    save_id_map_png(folder / "masks.png", sample["masks"].to_id_map())
    return folder


def _user_folder(path: Path, names=("overlay.png", "notes.txt")) -> dict[str, str]:
    path.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (path / name).write_bytes(f"the user's own {name} #{i}".encode())
    return _digest(path)


# --------------------------------------------------------------------------- the mechanism


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new cont")
        raise RuntimeError("the writer crashed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_path(tmp_path / "b.png") as tmp:
        assert tmp.name == "b.png" and tmp.parent != tmp_path and PART.match(tmp.parent.name)
        tmp.write_bytes(b"png")
    assert (tmp_path / "b.png").read_bytes() == b"png" and not _parts(tmp_path)
    with pytest.raises(OutputError, match="is a folder"):
        atomic_write(tmp_path, "x")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write(tmp_path / "a.json" / "below.json", "x")  # a file where a folder is needed


def test_claim_folder_rules(tmp_path):
    new = claim_folder(tmp_path / "new", "run")
    new.record(tmp_path / "new" / "x.png", "y.json")
    assert json.loads((tmp_path / "new" / MANIFEST).read_text()) == {"kind": "run", "files": ["x.png", "y.json"]}
    (tmp_path / "new" / "x.png").write_bytes(b"x")
    assert claim_folder(tmp_path / "new", "run").files == ["x.png", "y.json"]  # the same kind: written again
    with pytest.raises(OutputError, match=r"an `esgkit run` output: x\.png.*--overwrite"):
        claim_folder(tmp_path / "new", "demo")
    (tmp_path / "empty").mkdir()
    claim_folder(tmp_path / "empty", "demo")
    _user_folder(tmp_path / "mine")
    with pytest.raises(OutputError, match=r"files esgkit did not write: notes\.txt, overlay\.png"):
        check_folder(tmp_path / "mine", "run")
    assert not (tmp_path / "mine" / MANIFEST).exists()
    claim_folder(tmp_path / "mine", "run", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file; give a folder"):
        claim_folder(tmp_path / "file", "run")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        claim_folder(tmp_path / "file" / "below", "run")


def test_claim_folder_removes_what_killed_writers_left(tmp_path):
    folder = claim_folder(tmp_path / "out", "run").path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = folder / "sub" / f".x.png.{dead.pid}-0123abcd.part"
    live = folder / f".y.png.{os.getpid()}-0123abcd.part"
    for p in (stale, live):
        p.mkdir(parents=True)
        (p / "half").write_bytes(b"torn")
    claim_folder(folder, "run")
    assert not stale.exists() and live.exists()  # a running writer's folder is kept


def test_claim_file_rules(tmp_path):
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    with pytest.raises(OutputError, match="also an input"):
        claim_file(pred, "score", overwrite=True, inputs=[tmp_path / "gt.json", pred])
    with pytest.raises(OutputError, match="is a folder"):
        claim_file(tmp_path, "score")
    with pytest.raises(OutputError, match="not an earlier `esgkit score` output"):
        claim_file(pred, "score")
    claim_file(pred, "score", overwrite=True)
    ours = tmp_path / "m.json"
    ours.write_text(json.dumps({"written_by": written_by_tag("score"), "metrics": {}}))
    claim_file(ours, "score")
    with pytest.raises(OutputError):
        claim_file(ours, "eval")


# --------------------------------------------------------------------------- each command


def test_run_refuses_the_users_folder_and_reruns_into_its_own(scene, tmp_path, capsys):
    args = ["run", "colormap", "--image", str(scene / "scene.png"), "--masks", str(scene / "masks.png")]
    mine = tmp_path / "mine"
    before = _user_folder(mine)
    assert main([*args, "--out", str(mine)]) == 2
    assert "overlay.png" in _error(capsys) and _digest(mine) == before  # intact, byte for byte
    assert main([*args, "--out", str(mine), "--overwrite"]) == 0
    assert (mine / "notes.txt").read_bytes() == b"the user's own notes.txt #1"
    assert (mine / "overlay.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out)]) == 0  # its own folder: written again
    assert json.loads((out / MANIFEST).read_text())["files"] == ["colormap.png", "masks.json", "overlay.png"]
    assert not _parts(out)
    (tmp_path / "f").write_text("x")
    assert main([*args, "--out", str(tmp_path / "f")]) == 2 and "is a file" in _error(capsys)


def test_score_never_overwrites_its_input_or_the_users_file(data, tmp_path, capsys):
    from esgkit.evaluation.oracle import oracle_predictions

    gt = data / "annotations" / "entityseg_val.json"
    pred = oracle_predictions("entity", gt, tmp_path / "pred.json")
    kept = pred.read_bytes()
    args = ["score", "entity", "--gt", str(gt), "--pred", str(pred)]
    for out in (pred, gt):
        assert main([*args, "--out", str(out), "--overwrite"]) == 2
        assert "also an input" in _error(capsys)
    assert pred.read_bytes() == kept
    assert main([*args, "--out", str(tmp_path)]) == 2 and "is a folder" in _error(capsys)
    mine = tmp_path / "metrics.json"
    mine.write_text('{"mine": 1}')
    assert main([*args, "--out", str(mine)]) == 2 and "--overwrite" in _error(capsys)
    assert mine.read_text() == '{"mine": 1}'
    assert main([*args, "--out", str(mine), "--overwrite"]) == 0
    assert main([*args, "--out", str(mine)]) == 0  # an earlier `esgkit score` output: replaced
    record = json.loads(mine.read_text())
    assert record["written_by"] == "esgkit score" and record["metrics"]["APe"] == pytest.approx(1.0)


def test_eval_claims_the_metrics_file_and_the_prediction_folder(data, tmp_path, capsys):
    args = ["eval", "colormap", "--data", str(data), "--max-images", "1", "--no-progress", "--no-mask-cache"]
    out = tmp_path / "m.json"
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out)]) == 0  # a rerun replaces its own files
    assert json.loads(out.read_text())["written_by"] == "esgkit eval"
    assert json.loads((tmp_path / "m_predictions" / MANIFEST).read_text())["kind"] == "eval-predictions"
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path)]) == 2 and "is a folder" in _error(capsys)
    mine = tmp_path / "mine.json"
    mine.write_text("{}")
    assert main([*args, "--out", str(mine)]) == 2 and "--overwrite" in _error(capsys)
    before = _user_folder(tmp_path / "x_predictions", names=("entity_pred.json",))
    assert main([*args, "--out", str(tmp_path / "x.json")]) == 2
    assert "prediction folder" in _error(capsys) and not (tmp_path / "x.json").exists()
    assert _digest(tmp_path / "x_predictions") == before


def _train(data, out, *extra):
    return main(["train", "gella_tiny", "--data", str(data), "--out", str(out), "--no-progress", *TINY_TRAIN, *extra])


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_refuses_the_users_folder_and_an_earlier_run(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    before = _user_folder(mine, names=("config.json", "metrics.jsonl"))
    assert _train(data, mine, "train.steps=2") == 2
    err = _error(capsys)
    assert "config.json" in err and "metrics.jsonl" in err and _digest(mine) == before
    assert _train(data, mine, "train.steps=2", "--resume") == 2 and _digest(mine) == before
    assert "metrics.jsonl" in _error(capsys)
    (tmp_path / "f").write_text("x")
    assert _train(data, tmp_path / "f", "train.steps=2") == 2 and "is a file" in _error(capsys)

    run = tmp_path / "run"
    assert _train(data, run, "train.steps=2") == 0
    assert _train(data, run, "train.steps=3") == 2
    err = _error(capsys)
    assert "--resume" in err and "--overwrite" in err
    assert _train(data, run, "train.steps=3", "--resume", "--overwrite") == 2 and "only one" in _error(capsys)
    assert _train(data, run, "train.steps=3", "--overwrite", "train.checkpoint_every=1") == 0
    assert _steps(run) == [1, 2, 3]  # started over: nothing of the first run is left
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.json", "step_00000001",
                                                                       "step_00000002", "step_00000003"]
    assert _train(data, mine, "train.steps=2", "--overwrite") == 0  # the run's own names replaced
    assert _steps(mine) == [1, 2] and "train" in json.loads((mine / "config.json").read_text())


def test_data_refuses_the_users_folder_and_a_split_of_other_settings(tmp_path, capsys):
    args = ["data", "shapesworld", "--images", "2", "--size", "64x64", "--workers", "1"]
    mine = tmp_path / "mine"
    before = _user_folder(mine)
    assert main([*args, str(mine)]) == 2 and "overlay.png" in _error(capsys)
    assert _digest(mine) == before
    out = tmp_path / "sw"
    assert main([*args, str(out)]) == 0
    assert main([*args, str(out), "--split", "train"]) == 0  # several splits share the folder
    first = _digest(out)
    assert main([*args, str(out)]) == 0 and "nothing to do" in capsys.readouterr().out
    assert _digest(out) == first
    assert main([*args, str(out), "--seed", "3"]) == 2 and "--overwrite" in _error(capsys)
    assert _digest(out) == first
    assert main([*args, str(out), "--seed", "3", "--images", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "val").iterdir()) == ["000000000001.jpg"]  # the old split is gone
    assert json.loads((out / "shapesworld_val.json").read_text())["seed"] == 3
    assert (out / "train" / "000000000002.jpg").is_file()  # the other split is untouched
    assert main([*args, str(mine), "--overwrite"]) == 0  # other files are kept
    assert (mine / "overlay.png").read_bytes() == b"the user's own overlay.png #0" and (mine / "val").is_dir()
    (tmp_path / "f").write_text("x")
    assert main([*args, str(tmp_path / "f")]) == 2 and "is a file" in _error(capsys)


def test_an_interrupted_split_of_other_settings_is_redone_from_scratch(tmp_path, capsys):
    from esgkit.datasets.shapesworld import provenance
    from esgkit.datasets.shapesworld_files import split_state

    args = ["data", "shapesworld", str(tmp_path / "sw"), "--images", "3", "--size", "64x64", "--workers", "1"]
    assert main(args) == 0
    out = tmp_path / "sw"
    (out / "shapesworld_val.json").unlink()  # as if killed before the end, with 3 images of seed 0
    (out / ".shapesworld_val.pending.json").write_text(json.dumps(provenance(3, 0, "64x64", "val")))
    meta = provenance(2, 5, "64x64", "val")
    assert split_state(out, "val", meta)[0] == "partial-different"
    assert main([*args[:3], "--images", "2", "--seed", "5", "--size", "64x64", "--workers", "1"]) == 0
    assert sorted(p.name for p in (out / "val").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    assert split_state(out, "val", meta)[0] == "complete"


def test_a_metrics_row_torn_by_a_kill_is_dropped(tmp_path):
    from esgkit.training.metrics import read_metrics
    from esgkit.training.trainer import _truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    _truncate_metrics(path, 2)  # what a resume from the checkpoint of step 2 does
    assert path.read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 1.0}\n'
    path.write_text('{"step": 1}\n{"step": 2}')  # whole, but the newline was not written
    _truncate_metrics(path, 5)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


@pytest.mark.slow
def test_demo_refuses_the_users_folder_and_reruns_into_its_own(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["demo", "--size", "96x96", "--gt-masks", "--caption", "a red circle"]
    before = _user_folder(tmp_path / "mine")
    assert main([*args, "--out", "mine"]) == 2 and "overlay.png" in _error(capsys)
    assert _digest(tmp_path / "mine") == before
    assert main(args) == 0 and main(args) == 0  # the default folder esgkit_demo, twice
    written = sorted(p.name for p in (tmp_path / "esgkit_demo").iterdir())
    assert written == sorted([MANIFEST, "entities.png", "esg.png", "grounding.json", "image.png", "overlay.png"])


# --------------------------------------------------------------------------- kill -9, then run again


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "esgkit.core.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the command never reached the point to kill it at"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "esgkit.core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_train_killed_after_a_checkpoint_resumes_without_losing_a_step(data, tmp_path):
    from safetensors.torch import load_file

    from esgkit.layers.weights import latest_checkpoint, list_checkpoints
    from esgkit.training.checkpoint import load_checkpoint

    run, steps = tmp_path / "run", 40
    args = ["train", "gella_tiny", "--data", str(data), "--out", str(run), "--no-progress", *TINY_TRAIN,
            f"train.steps={steps}", "train.checkpoint_every=3"]
    _kill_when(_start(*args), lambda: (run / "checkpoints" / "latest.json").is_file())

    # what the kill left: the newest checkpoint whole, every row up to it, at most one torn row after
    last = load_checkpoint(run).step
    assert 3 <= last < steps
    for _, folder in list_checkpoints(run / "checkpoints"):
        assert {"model.safetensors", "state.pt", "config.json"} <= {p.name for p in folder.iterdir()}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    with_last = rows + ([json.loads(lines[-1])] if lines[-1].endswith("}") else [])
    assert [r["step"] for r in with_last][:last] == list(range(1, last + 1))
    kept = {r["step"]: r for r in with_last if r["step"] <= last}
    json.loads((run / "config.json").read_text())
    visible = {p.name for p in run.iterdir() if not p.name.startswith(".")}  # temporaries are hidden
    assert visible == {"checkpoints", "metrics.jsonl", "config.json"}  # no final weights before the end

    again = _run(*args)  # without --resume: refused, nothing touched
    assert again.returncode == 2 and "--resume" in again.stderr and load_checkpoint(run).step == last

    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in final] == list(range(1, steps + 1))  # no step lost, none twice, no torn row
    assert all(final[s - 1] == kept[s] for s in kept)  # the rows before the checkpoint are the same rows
    assert load_checkpoint(run).step == steps and latest_checkpoint(run).name == f"step_{steps:08d}"
    assert load_file(str(run / "gella.safetensors"))
    from PIL import Image

    Image.open(run / "loss.png").load()
    assert not _parts(run) and not list((run / "checkpoints").glob(".tmp-*"))  # no half-written file left


@pytest.mark.slow
def test_data_killed_midway_reruns_to_the_same_files(tmp_path):
    from PIL import Image

    from esgkit.core.errors import InputError
    from esgkit.datasets.shapesworld import ShapesWorldDataset, generate

    out, n = tmp_path / "sw", 40
    args = ["data", "shapesworld", str(out), "--images", str(n), "--size", "128x128", "--seed", "4", "--workers", "1"]
    _kill_when(_start(*args), lambda: len(list((out / "val").glob("*.jpg"))) >= 3 if (out / "val").is_dir() else False)

    assert (out / ".shapesworld_val.pending.json").is_file() and not (out / "shapesworld_val.json").exists()
    with pytest.raises(InputError, match="interrupted"):  # the interrupted split does not pass for a complete one
        len(ShapesWorldDataset(ShapesWorldDataset.Config(root=str(out), split="val")))
    for image in [*(out / "val").iterdir(), *(out / "annotations" / "panoptic_val").iterdir()]:
        if not image.name.startswith("."):  # every visible image file is whole (temporaries are hidden)
            Image.open(image).load()

    again = _run(*args)
    assert again.returncode == 0 and "resuming" in again.stdout, again.stderr[-3000:]
    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(out), split="val"))
    assert len(dataset) == n and dataset[n - 1]["image"].shape == (128, 128, 3)
    assert not _parts(out) and not (out / ".shapesworld_val.pending.json").exists()
    straight = generate(tmp_path / "straight", images=n, seed=4, size="128x128", split="val")
    assert _digest(out, skip=(MANIFEST,)) == _digest(straight)  # the same bytes as a run never killed
    assert np.array_equal(dataset[0]["image"], ShapesWorldDataset(ShapesWorldDataset.Config(root=str(straight),
                                                                                             split="val"))[0]["image"])
