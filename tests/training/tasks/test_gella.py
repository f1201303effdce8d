"""GELLA training (esgkit train / eval): exact resume on the real task, the CLI end to end, and bad
input. Checkpoint corruption and torchrun data parallelism are covered generically by
tests/training/test_checkpoint.py and tests/training/test_distributed.py (the trainer is the same)."""

import json

import numpy as np
import pytest
import torch

from esgkit.core import CompatibilityError, InputError, build_pipeline, load_config
from esgkit.core.schema import to_container
from esgkit.training.config import split_train_section
from esgkit.training.tasks.gella import GellaTask, GellaTrainConfig
from esgkit.training.trainer import Trainer

# gella_tiny shrunk further so a step takes a few milliseconds on the shared CPU.
TINY = ["pipeline.mask_size=64", "vision_encoder.image_size=64", "mask_decoder.num_queries=12",
        "train.batch_size=2", "train.log_every=1", "train.lr=1e-3", "train.checkpoint_every=2",
        "train.subtasks={description: 0.2, nouns: 0.2, grounding: 0.4, res: 0.2}"]


@pytest.fixture(scope="module")
def data(tiny_shapesworld):
    return tiny_shapesworld


def _config(*extra):
    return to_container(load_config("gella_tiny", [*TINY, *extra]))


def _trainer(data, out, steps, resume=False):
    cfg = _config(f"train.steps={steps}")
    train_cfg, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    return Trainer(GellaTask(cfg, data, task_cfg), train_cfg, out, resume=resume, progress=False)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_resume_continues_exactly(data, tmp_path):
    """N steps, stop, resume to 2N == 2N straight: same logged losses and the same weights."""
    straight = _trainer(data, tmp_path / "a", 4)
    straight.fit()
    first = _trainer(data, tmp_path / "b", 4)
    first.fit(until=2)
    resumed = _trainer(data, tmp_path / "b", 4, resume=True)
    assert resumed.step == 2
    resumed.fit()
    a, b = _rows(tmp_path / "a" / "metrics.jsonl"), _rows(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in ("loss", "ans", "seg_class", "seg_mask", "seg_dice"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    # every loss term of the paper is logged, and the association loss really ran on some step
    assert {"ans", "asso", "seg_class", "seg_mask", "seg_dice"} <= set(a[0])
    assert any(r["asso"] > 0 for r in a)


# gella_tiny_trained's departures from the paper: BIO noun tagging, entity pooling, the image beside the colormap
RECIPE = ["language_decoder.noun_extraction=tag", "mask_decoder.entity_pooling=true", "pipeline.colormap_image=true",
          "colormap_encoder.options.in_chans=6", "pipeline.query_matching=hungarian"]


@pytest.mark.parametrize("extra", [[], RECIPE], ids=["paper", "recipe"])
def test_losses_decrease_on_one_batch(data, extra):
    cfg = _config(*extra)
    train_cfg, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, task_cfg)
    torch.manual_seed(0)
    model = task.build_model()
    samples = [task.train_dataset()[i] for i in range(2)]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    batch = task.collate(samples)
    first = None
    for _ in range(15):
        terms = task.losses(model, batch)
        total = sum(terms.values())
        first = float(total.detach()) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert float(total.detach()) < 0.8 * first
    assert ("tag" in terms) == bool(extra)
    if extra:
        assert all(p.grad is not None for p in model["mask_decoder"].pooled.parameters())
        assert all(p.grad is not None for p in model["language_decoder"].span_tagger.parameters())


def test_train_and_eval_commands(data, tmp_path, capsys):
    from esgkit.core.cli import main

    run = tmp_path / "run"
    assert main(["train", "gella_tiny", "--data", str(data), "--out", str(run), "--no-progress",
                 *TINY, "train.steps=2"]) == 0
    assert (run / "gella.safetensors").is_file() and (run / "loss.png").is_file()
    metrics = tmp_path / "m.json"
    assert main(["eval", "gella_tiny", "--data", str(data), "--out", str(metrics), "--checkpoint", str(run),
                 "--max-images", "1", *[o for o in TINY if not o.startswith("train.")]]) == 0
    got = json.loads(metrics.read_text())["metrics"]
    for key in ("AR", "AR_th", "AR_st", "AR_sing", "noun_recall", "cIoU", "gIoU"):
        assert key in got
    assert 0.0 <= got["AR"] <= 1.0
    # the prediction files are kept beside the metrics and score with `esgkit score`
    assert (tmp_path / "m_predictions" / "png_pred.json").is_file()
    assert "AR" in capsys.readouterr().out


def test_data_dir_without_the_split_names_the_missing_file(data, tmp_path):
    import shutil

    from esgkit.core.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    (broken / "annotations" / "png_coco_train.json").unlink()
    with pytest.raises(InputError, match=r"broken.*png_coco_train\.json"):
        GellaTask(_config(), broken)
    assert main(["train", "gella_tiny", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) != 0


def test_components_that_do_not_fit(data):
    # a language decoder whose projector takes 32-d tokens, behind a 64-wide CLIP
    with pytest.raises(CompatibilityError, match="vision encoder gives 64"):
        build_pipeline("gella_tiny", ["language_decoder.vision_dim=32"])


def test_unknown_subtask_is_a_config_error():
    from esgkit.core import ConfigError

    _, settings = split_train_section({"subtasks": {"captioning": 1.0}}, GellaTrainConfig)
    with pytest.raises(ConfigError, match="train.subtasks: unknown subtask 'captioning'"):
        GellaTask(_config(), ".", settings)


def test_image_of_another_size_than_the_masks(data):
    from esgkit.datasets.shapesworld import ShapesWorldDataset

    sample = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(data), split="val"))[0]
    pipeline = build_pipeline("gella_tiny", [o for o in TINY if not o.startswith("train.")])
    small = np.zeros((64, 80, 3), np.uint8)
    with pytest.raises(InputError, match="64"):
        pipeline.run(small, sample["masks"], caption="a red circle")


def test_torchrun_two_processes_train_gella(data, tmp_path):
    """`torchrun --nproc_per_node 2 -m esgkit.core.cli train ...` (gloo): the GELLA task under DDP,
    including steps where one process has no grounding sample (unused associator, pooling layer and
    span tagger), with gella_tiny_trained's recipe options."""
    import os
    import subprocess
    import sys

    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "esgkit.core.cli",
         "train", "gella_tiny", "--data", str(data), "--out", str(run), "--no-progress", *TINY, *RECIPE,
         "train.steps=2", "train.subtasks={description: 0.5, grounding: 0.5}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert (run / "gella.safetensors").is_file()


def _halves(masks):
    """Every segment cut into a left and a right piece (a segmenter that over-segments), and the
    segment id each piece came from."""
    pieces, origin = [], []
    for seg_id, m in zip(masks.ids, masks.masks):
        cols = np.nonzero(m.any(0))[0]
        mid = int(np.median(cols)) if len(cols) > 1 else int(cols[0]) + 1
        for piece in (m & (np.arange(m.shape[1]) < mid)[None], m & (np.arange(m.shape[1]) >= mid)[None]):
            if piece.any():
                pieces.append(piece)
                origin.append(int(seg_id))
    return np.stack(pieces), origin


def test_a_segmenters_masks_as_the_mask_source(data, tmp_path):
    """train.mask_source names a config whose segmenter makes the masks (here from_files: every
    segment split in two); each piece is a positive of the phrases of the segment it came from."""
    from esgkit.core import EntityMasks
    from esgkit.core.io import save_masks
    from esgkit.datasets.shapesworld import ShapesWorldDataset

    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(data), split="train"))
    folder = tmp_path / "masks"
    folder.mkdir()
    origins = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        pieces, origins[sample["image_id"]] = _halves(sample["masks"])
        save_masks(folder / f"{sample['image_id']}.json", EntityMasks(pieces))
    source = tmp_path / "halves.yaml"
    source.write_text(f"segmenter: {{name: from_files, path: '{folder}'}}\n")
    cfg = _config(f"train.mask_source={source}", "train.mask_source_ratio=1.0", "train.subtasks={description: 0.0, nouns: 0.0, grounding: 1.0, res: 0.0}")
    train_cfg, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, task_cfg)
    samples = task.train_dataset()
    first, raw = samples[0], dataset[0]
    origin = np.array(origins[raw["image_id"]])
    expected = [np.nonzero(np.isin(origin, segs))[0].tolist() for segs in raw["phrase_segments"]]
    assert first["pred"]["phrase_entities"] == expected
    assert len(first["pred"]["targets"]) == len(origin) > len(first["gt"]["targets"])
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.collate([samples[0], samples[1]])
    assert [len(t) for t in batch["targets"]] == [len(samples[0]["pred"]["targets"]), len(samples[1]["pred"]["targets"])]
    terms = task.losses(model, batch)
    assert float(terms["asso"].detach()) > 0 and all(torch.isfinite(v.detach()) for v in terms.values())
    # ratio 0: the same split trains on the annotated masks only
    cfg = _config(f"train.mask_source={source}", "train.mask_source_ratio=0.0")
    _, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, task_cfg)
    batch = task.collate([task.train_dataset()[0]])
    assert len(batch["targets"][0]) == len(task.train_dataset()[0]["gt"]["targets"])


def test_mask_source_errors_name_the_key(data, tmp_path):
    from esgkit.core import ConfigError

    _, settings = split_train_section({"mask_source_ratio": 1.5}, GellaTrainConfig)
    with pytest.raises(ConfigError, match=r"train.mask_source_ratio: must be within \[0, 1\]"):
        GellaTask(_config(), data, settings)
    (tmp_path / "gt.yaml").write_text("segmenter: {name: ground_truth}\n")
    _, settings = split_train_section({"mask_source": str(tmp_path / "gt.yaml")}, GellaTrainConfig)
    with pytest.raises(ConfigError, match="train.mask_source: .*write mask_source: ground_truth"):
        GellaTask(_config(), data, settings)


@pytest.mark.parametrize("description_seg", [False, True])
def test_description_trains_the_language_loss_only_unless_asked(data, description_seg):
    cfg = _config("train.subtasks={description: 1.0, nouns: 0.0, grounding: 0.0, res: 0.0}", f"train.description_seg={str(description_seg).lower()}")
    _, settings = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, settings)
    torch.manual_seed(0)
    model = task.build_model()
    terms = task.losses(model, task.collate([task.train_dataset()[0], task.train_dataset()[1]]))
    assert float(terms["ans"]) > 0
    assert (float(terms["seg_mask"]) > 0) == description_seg
    if not description_seg:  # still part of the graph, so DDP sees every parameter used
        sum(terms.values()).backward()
        assert all(p.grad is not None for p in model["mask_decoder"].parameters() if p.requires_grad)


def test_mask_augment_perturbs_ground_truth_with_targets_by_the_predicted_rule(data):
    """train.mask_augment: 1 → every sample sees perturbed masks (here: every entity split, nothing
    else), each piece a positive of its segment's phrases; the same seed gives the same batch."""
    cfg = _config("train.mask_augment=1.0", "train.augment_split=1.0", "train.augment_merge=0.0",
                  "train.augment_jitter=0.0", "train.augment_drop=0.0",
                  "train.subtasks={description: 0.0, nouns: 0.0, grounding: 1.0, res: 0.0}")
    _, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, task_cfg)
    sample = task.train_dataset()[0]
    torch.manual_seed(3)
    batch = task.collate([sample])
    n_gt = len(sample["gt"]["targets"])
    assert len(batch["targets"][0]) > n_gt  # split: more entities than segments
    # each phrase keeps at least as many positives as before, all pieces of its own segments
    for before, after in zip(sample["gt"]["phrase_entities"], batch["phrase_entities"][0]):
        assert len(after) >= len(before)
    torch.manual_seed(3)
    again = task.collate([sample])
    assert all(torch.equal(a, b) for a, b in zip(batch["targets"], again["targets"]))
    assert torch.equal(batch["mask_input"], again["mask_input"])
    terms = task.losses(task.build_model(), batch)
    assert all(torch.isfinite(v.detach()) for v in terms.values())


def test_mask_augment_rates_are_checked():
    from esgkit.core import ConfigError
    from esgkit.training.tasks.gella import check_subtasks

    _, settings = split_train_section({"augment_drop": -0.1}, GellaTrainConfig)
    with pytest.raises(ConfigError, match=r"train.augment_drop: must be within \[0, 1\]"):
        check_subtasks(settings)


# the Table XX decoders (queries = the input entities): TINY without the mask2former's num_queries
ENTITY_TINY = [o for o in TINY if not o.startswith("mask_decoder.")]
ENTITY_DECODERS = {"roi_align": ["mask_decoder.name=roi_align"],
                   "mask_attention": ["mask_decoder.name=mask_attention", "mask_decoder.mask_in_attention=multiply"]}


@pytest.mark.parametrize("decoder", list(ENTITY_DECODERS))
def test_entity_query_decoders_train_with_query_i_as_entity_i(data, decoder):
    """Masks padded to the batch's largest count, the identity matching for L_seg and L_asso, the
    losses falling on one batch; the colormap encoder and fuser are built but not run."""
    from esgkit.training.tasks.gella import entity_matches

    grounding = "train.subtasks={description: 0.0, nouns: 0.0, grounding: 1.0, res: 0.0}"
    cfg = to_container(load_config("gella_tiny", [*ENTITY_TINY, *ENTITY_DECODERS[decoder], grounding]))
    train_cfg, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    task = GellaTask(cfg, data, task_cfg)
    torch.manual_seed(0)
    model = task.build_model()
    dataset = task.train_dataset()
    counts = [len(dataset[i]["gt"]["targets"]) for i in range(len(dataset))]
    first = counts.index(min(counts))
    second = counts.index(max(counts))
    assert counts[first] < counts[second], counts
    batch = task.collate([dataset[first], dataset[second]])
    n, most = counts[first], counts[second]
    assert batch["mask_input"].shape == (2, most, 64, 64)
    assert float(batch["mask_input"][0, n:].abs().sum()) == 0.0                 # padding: all-zero masks
    assert bool(batch["mask_input"][0, :n].flatten(1).any(1).all())
    pairs = entity_matches(batch["mask_input"], batch["targets"])
    assert [p[0].tolist() for p in pairs] == [p[1].tolist() for p in pairs] == [list(range(n)), list(range(most))]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        terms = task.losses(model, batch)
        total = sum(terms.values())
        assert all(torch.isfinite(v.detach()) for v in terms.values()) and float(terms["asso"].detach()) > 0
        losses.append(float(total.detach()))
        opt.zero_grad()
        total.backward()
        if len(losses) == 1:
            assert all(p.grad is not None for p in model["mask_decoder"].parameters())
            assert all(p.grad is None for part in ("colormap_encoder", "fuser") for p in model[part].parameters())
        opt.step()
    assert losses[-1] < losses[0]


def test_train_and_eval_commands_with_an_entity_query_decoder(data, tmp_path):
    from esgkit.core.cli import main

    run = tmp_path / "run"
    swap = ENTITY_DECODERS["mask_attention"]
    assert main(["train", "gella_tiny", "--data", str(data), "--out", str(run), "--no-progress",
                 *ENTITY_TINY, *swap, "train.steps=1"]) == 0
    metrics = tmp_path / "m.json"
    assert main(["eval", "gella_tiny", "--data", str(data), "--out", str(metrics), "--checkpoint", str(run),
                 "--max-images", "1", *[o for o in ENTITY_TINY if not o.startswith("train.")], *swap]) == 0
    got = json.loads(metrics.read_text())["metrics"]
    assert 0.0 <= got["AR"] <= 1.0 and 0.0 <= got["APe_rec"] <= 1.0  # grounding, and the reconstruction part


def test_building_the_model_to_train_warns_of_no_untrained_weights_it_trains(data):
    """The pipeline's weights are empty before training by design: no warning for them (it would tell the
    user to train what they are training); another empty weights key would still warn."""
    import warnings

    from esgkit.core.pipeline import UntrainedWeightsWarning

    cfg = _config()
    _, task_cfg = split_train_section(cfg["train"], GellaTrainConfig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GellaTask(cfg, data, task_cfg).build_model()
    assert not [w for w in caught if issubclass(w.category, UntrainedWeightsWarning)], [str(w.message) for w in caught]
    with pytest.warns(UntrainedWeightsWarning, match="pipeline.checkpoint"):  # outside training it still warns
        build_pipeline(cfg)
