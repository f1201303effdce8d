"""scripts/segmenter_errors.py: one error table per mask source, counting every annotated segment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "segmenter_errors.py"


def test_tables_count_every_segment(tiny_shapesworld, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ESGKIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tiny_shapesworld), "--split", "train",
                           "--images", "2", "--segmenter", "cropformer_tiny", "--augment"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    titles = re.findall(r"^(.+): (\d+) masks for (\d+) segments$", done.stdout, re.M)
    assert [t[0] for t in titles] == ["cropformer_tiny", "train.mask_augment (MaskNoise defaults)"]
    for block, (_, _, segments) in zip(done.stdout.split("\n\n")[1:], titles):
        counts = [int(x) for line in block.splitlines()[2:] for x in line.split()[1:]]
        assert sum(counts) == int(segments) > 0
    assert any((tmp_path / "cache" / "segments").iterdir())  # the segmenter ran through the cache
