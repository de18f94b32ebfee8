"""
Peak memory of ``async-consumer run -j 8`` against the size of its parameter file (issue 15).

Run ``python benchmarks/memory.py`` from the repository root. For each size (1,000, 10,000,
50,000 and 100,000 lines by default) it writes a JSONL file of that many distinct parameter
sets, starts ``async-consumer run -j 8 --store sqlite:///... --params FILE -- python -c ...``
(a trial that writes an objective and exits) in a fresh process, and stops it with SIGINT once
``--trials`` outcomes have been printed: every size runs about the same number of trials (the
same ``--trials`` plus at most the 8 running when the signal comes), so what differs between the
rows is the file, not the work done. A stopped run still reads the whole file, adds every line
to its store, runs, and prints its summary (counts, best trial) before it exits with 130: the
path a user takes who stops a large search and looks at what it found.

Peak RSS is the run's own ``ru_maxrss`` from ``os.wait4`` (the largest resident set the process
ever had; its trials are smaller Python processes, which ``wait4`` would only count if one were
larger). The run's store is a fresh SQLite file in a temporary directory each time.

It then times, at the largest size, ``async-consumer add`` of the whole file into a fresh
store and ``async-consumer status`` of that store (each a fresh process, wall time, median of
``--runs``). The last line is the ratio of the peak RSS at the largest size to the smallest's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIAL = (
    "import json, os; p = json.load(open(os.environ['ASYNC_CONSUMER_PARAMS_PATH'])); "
    "open(os.environ['ASYNC_CONSUMER_RESULTS_PATH'], 'w').write(str(p['x'] * p['x']))"
)
"""A fast trial: the square of its ``x``, as its objective."""

COMMAND = [os.path.join(os.path.dirname(sys.executable), "async-consumer")]
MiB = 1024 * 1024


def write_params(path: Path, lines: int) -> None:
    """``lines`` distinct parameter sets, a few keys each, as a search's file would have."""
    with path.open("w") as out:
        for i in range(lines):
            params = {"x": i / lines, "lr": 10 ** -(i % 5), "layers": i % 7, "name": f"t{i}"}
            out.write(json.dumps(params) + "\n")


def peak_rss_of_run(params: Path, trials: int, jobs: int) -> tuple[float, int, float]:
    """Run ``run -j jobs`` on ``params`` until ``trials`` outcomes; its peak RSS (MiB), outcomes, s."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        argv = [*COMMAND, "run", "-j", str(jobs), "--store", f"sqlite:///{tmp}/store.db",
                "--params", str(params), "--base-dir", f"{tmp}/trials", "--code-change",
                "ignore", "--", sys.executable, "-c", TRIAL]  # fmt: skip
        start = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout is not None
        seen = 0
        for line in child.stdout:
            seen += line.startswith(("ok ", "!! ", "-- ", "?? "))
            if seen == trials:
                child.send_signal(signal.SIGINT)
                break
        for _ in child.stdout:  # the rest: the summary
            pass
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - start
    return usage.ru_maxrss * 1024 / MiB, seen, elapsed


def timed(argv: list[str]) -> float:
    """Seconds ``argv`` takes, run to its end (it must succeed)."""
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def add_and_status(params: Path, runs: int) -> tuple[float, float]:
    """Median seconds of ``add`` of ``params`` into a fresh store, and of ``status`` after it."""
    adds, statuses = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            store = f"sqlite:///{tmp}/store.db"
            adds.append(timed([*COMMAND, "add", "--store", store, "--params", str(params)]))
            statuses.append(timed([*COMMAND, "status", "--store", store]))
    return statistics.median(adds), statistics.median(statuses)


def main() -> None:
    """Parse the options, measure, print the table and the ratio line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000", help="lines per file")
    parser.add_argument("--trials", type=int, default=300, help="outcomes before SIGINT")
    parser.add_argument("-j", "--jobs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="add/status runs (median)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peaks: dict[int, float] = {}
    print(f"{'lines':>8} {'peak RSS MiB':>13} {'outcomes':>9} {'wall s':>7}")
    with tempfile.TemporaryDirectory(prefix="bench-memory-params-") as tmp:
        for size in sizes:
            params = Path(tmp) / f"params-{size}.jsonl"
            write_params(params, size)
            peak, seen, elapsed = peak_rss_of_run(params, args.trials, args.jobs)
            peaks[size] = peak
            print(f"{size:>8} {peak:>13.1f} {seen:>9} {elapsed:>7.1f}", flush=True)
        add_s, status_s = add_and_status(Path(tmp) / f"params-{sizes[-1]}.jsonl", args.runs)
    print(f"add of {sizes[-1]} trials: {add_s:.2f} s; status: {status_s:.2f} s (target < 2 s)")
    ratio = peaks[sizes[-1]] / peaks[sizes[0]]
    print(f"ratio: peak RSS at {sizes[-1]} lines / at {sizes[0]} = {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
