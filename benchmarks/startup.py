"""
The command's start-up against its floor: what ``async-consumer`` costs before it runs a trial.

Runs each of these ``--runs`` times, interleaved, and prints the median wall and CPU seconds
(user + sys, the process's and its children's, from ``wait4``):

  - ``python``: ``python -c pass``, the interpreter alone;
  - ``floor``: ``import anyio, asyncio, sqlite3`` and one pydantic model built (the libraries the
    run path cannot do without: a model's first build imports pydantic's schema machinery and
    its plugin loader, ``importlib.metadata`` included);
  - ``--help``: ``async-consumer run --help``;
  - ``fixed``: ``async-consumer run`` of a one-trial grid whose trial already completed (start-up,
    the store opened and checked, the summary: the fixed cost of every run).

The final line is ``fixed`` over ``floor`` in CPU time (1 would be no cost of our own). CPU time
moves less with the machine's load than wall time does, but it moves (caches, frequency).

    python benchmarks/startup.py [--runs 11] [--dir /dev/shm]
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

COMMAND = str(Path(sys.executable).parent / "async-consumer")
TRIAL = "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1.0')"
FLOOR = "import anyio, asyncio, sqlite3\nfrom pydantic import BaseModel\nclass M(BaseModel): x: int"


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one command (the CPU time of its descendants included)."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        msg = f"{argv} exited with {os.waitstatus_to_exitcode(status)}"
        raise RuntimeError(msg)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> None:
    """Measure each command ``--runs`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--dir", default=None, help="where the store and trial directory go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        run = [COMMAND, "run", "--grid", "x=1", "--store", f"sqlite:///{base / 'store.db'}"]
        run += ["--base-dir", str(base / "trials"), "--", sys.executable, "-c", TRIAL]
        timed(run, base)  # the one trial runs now: every timed run finds nothing left
        cases = {
            "python": [sys.executable, "-c", "pass"],
            "floor": [sys.executable, "-c", FLOOR],
            "--help": [COMMAND, "run", "--help"],
            "fixed": run,
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                times[name].append(timed(argv, base))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; median of {args.runs}")
    print(f"{'case':<8} {'wall s':>7} {'cpu s':>7}")
    cpu = {}
    for name, rows in times.items():
        cpu[name] = statistics.median(c for _, c in rows)
        print(f"{name:<8} {statistics.median(w for w, _ in rows):7.3f} {cpu[name]:7.3f}")
    print(f"ratio (fixed / floor, CPU): {cpu['fixed'] / cpu['floor']:.2f}")


if __name__ == "__main__":
    main()
