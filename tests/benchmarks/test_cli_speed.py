"""`esgkit list` wall time (target: ≤ 0.3 s, median of 5 on an idle machine). Run: pytest tests/benchmarks --benchmark-enable"""

import subprocess
import sys


def test_esgkit_list_wall_time(benchmark):
    def run():
        res = subprocess.run([sys.executable, "-m", "esgkit.core.cli", "list"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res

    res = benchmark.pedantic(run, rounds=5, iterations=1)
    assert "segmenter:" in res.stdout
