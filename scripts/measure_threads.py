"""How long `esgkit eval` takes on a busy machine with torch's own thread count (one per core) and
with esgkit's default (the cores not busy; esgkit.core.runtime), one run each under the same load.

    python scripts/measure_threads.py --data data/sw --max-images 20 --load 1

``--load K`` starts K busy processes (a pure-Python spin loop, like another training on the machine)
for the duration of both runs and waits until the 1-minute load average has risen before timing.
Prints one line per setting and the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time


def spin(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def timed_eval(args: argparse.Namespace, threads: str | None, out: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ESGKIT_THREADS")}
    cmd = [sys.executable, "-m", "esgkit.core.cli", "eval", args.config, "--data", args.data, "--out", out,
           "--max-images", str(args.max_images), "--no-progress", "--no-res", "--overwrite"]
    if threads is not None:
        cmd += ["--threads", threads]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gella_tiny_trained")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--load", type=int, default=1, help="busy processes running beside the measured ones")
    parser.add_argument("--settle-s", type=float, default=60.0, help="seconds of load before timing")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    stop = time.time() + 3600
    workers = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.load)]
    for w in workers:
        w.start()
    try:
        time.sleep(args.settle_s)
        print(f"{cores} cores, {args.load} busy process(es), load average {os.getloadavg()[0]:.2f}")
        with tempfile.TemporaryDirectory() as tmp:
            before = timed_eval(args, str(cores), os.path.join(tmp, "a.json"))  # torch's default: a thread per core
            print(f"torch default ({cores} threads): {before:.1f} s")
            after = timed_eval(args, None, os.path.join(tmp, "b.json"))
            print(f"esgkit default (free cores): {after:.1f} s")
        print(f"ratio before / after: {before / after:.2f}x")
    finally:
        for w in workers:
            w.terminate()


if __name__ == "__main__":
    main()
