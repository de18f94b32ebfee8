"""
One trial at a time: the median time of a trivial trial through ``Consumer.run`` against a bare
``anyio.open_process`` + ``wait`` of the same script, 200 runs each, interleaved.

    python benchmarks/single.py [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from async_consumer import Consumer, Trial, install_child_watcher

TRIALS = {
    "python": [
        sys.executable,
        "-c",
        "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1.0')",
    ],
    "sh": ["/bin/sh", "-c", 'echo 1.0 > "$ORION_RESULTS_PATH"'],
}


async def bare_once(argv: list[str], results: Path) -> float:
    """Seconds for one bare start, wait and close."""
    results.touch()
    start = time.perf_counter()
    process = await anyio.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "ORION_RESULTS_PATH": str(results)}, start_new_session=True,
    )  # fmt: skip
    await process.wait()
    await process.aclose()
    return time.perf_counter() - start


async def main(runs: int) -> None:
    """Time both ways, interleaved, and print the medians."""
    install_child_watcher()
    rows = []
    with tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp:
        for name, argv in TRIALS.items():
            consumer = Consumer(argv, base_dir=Path(tmp) / name, code_change="ignore")
            bare, ours = [], []
            for i in range(runs):
                bare.append(await bare_once(argv, Path(tmp) / f"{name}-{i}"))
                start = time.perf_counter()
                outcome = await consumer.run(Trial(id=f"t{i}"))
                ours.append(time.perf_counter() - start)
                assert outcome.is_completed, outcome
            rows.append((name, statistics.median(bare) * 1000, statistics.median(ours) * 1000))
    print(f"{'trial':<8}{'bare ms':>10}{'consumer ms':>13}{'extra ms':>10}{'ratio':>8}")
    for name, b, c in rows:
        print(f"{name:<8}{b:>10.2f}{c:>13.2f}{c - b:>10.2f}{b / c:>8.3f}")
    name, b, c = rows[0]
    print(
        f"ratio (bare / consumer, median of {runs} python trials): {b / c:.3f} ({c - b:.2f} ms extra a trial)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=200)
    anyio.run(main, parser.parse_args().runs)
