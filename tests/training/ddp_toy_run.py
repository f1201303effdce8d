"""Run by test_distributed.py under ``torchrun --nproc_per_node 2``: trains the toy task data-parallel
and writes each process's final weights to OUT/rank{R}.pt.

Usage: ddp_toy_run.py OUT STEPS [--until U] [--resume] [--augment] [--resume-check]

``--resume-check`` runs three trainers in the same processes (one launch instead of three): STEPS
straight into OUT/straight, STEPS/2 into OUT/split, then a fresh trainer resuming OUT/split to STEPS;
each writes OUT/<name>/rank{R}.pt."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from esgkit.training.config import TrainConfig  # noqa: E402
from esgkit.training.trainer import Trainer  # noqa: E402
from training_toy import ToyTask  # noqa: E402

DDP_CONFIG = dict(lr=3e-2, batch_size=8, warmup_steps=2, schedule="cosine", grad_clip=1.0, log_every=5,
                  checkpoint_every=10, seed=11)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("steps", type=int)
    parser.add_argument("--until", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--augment", action="store_true", help="random augmentation and dropout (per-rank RNG)")
    parser.add_argument("--resume-check", action="store_true")
    args = parser.parse_args()

    def train(run: Path, until: int | None, resume: bool) -> Trainer:
        task = ToyTask(augment=args.augment, dropout=0.1 if args.augment else 0.0)
        trainer = Trainer(task, TrainConfig(steps=args.steps, **DDP_CONFIG), run, resume=resume, progress=False)
        trainer.fit(until=until)
        torch.save(trainer.model.state_dict(), run / f"rank{trainer.dist.rank}.pt")
        print(f"{run.name}: rank {trainer.dist.rank}/{trainer.dist.world_size} at step {trainer.step}", flush=True)
        return trainer

    if args.resume_check:
        train(args.out / "straight", None, False)
        train(args.out / "split", args.steps // 2, False)
        trainer = train(args.out / "split", None, True)
    else:
        trainer = train(args.out / "run", args.until, args.resume)
    trainer.close()
