"""
``async-consumer run -j 1000 --heartbeat 0.5``: a thousand five-second trials from the command line.

1,000 trials of ``sleep 5`` (one line each in a parameter file) through ``async-consumer run
-j 1000 --heartbeat 0.5`` on a fresh SQLite store, with and without 2 CPU-burning processes
beside it. Measures, per run: the wall time of the command, how many trials completed (from the
store), how many leases were reclaimed (``reclaimed`` lines in its log), the peak thread count
and RSS of the command's process (sampled from ``/proc`` every 50 ms), and how late its
heartbeat writes came (p99: from the line ``-v`` logs at the end). Targets: all completed, 0
reclaims, wall < 9 s, <= 10 threads, p99 late < 100 ms. The ratio line compares the wall time
with the 5 s the trials sleep. Run through ``benchmarks/scale.py --cli``.

    python benchmarks/scale_cli.py [--trials 1000] [--seconds 5] [--heartbeat 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = '[{"name": "loss", "type": "objective", "value": 1}]'
COMMAND = shutil.which("async-consumer") or str(Path(sys.executable).with_name("async-consumer"))


def _proc(pid: int) -> tuple[int, int]:
    """Threads and RSS (KiB) of a process, (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields.get("VmRSS", "0 kB").split()[0])


def one_run(trials: int, seconds: float, heartbeat: float, burners: int) -> dict[str, float]:
    """Run the command once (with ``burners`` CPU burners beside it) and return its figures."""
    with tempfile.TemporaryDirectory(prefix="scale-cli-") as tmp:
        params = Path(tmp, "params.jsonl")
        params.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(trials)))
        store = f"sqlite:///{tmp}/store.db"
        argv = [COMMAND, "-v", "run", "--params", str(params), "-j", str(trials),
                "--heartbeat", str(heartbeat), "--store", store, "--base-dir", f"{tmp}/trials",
                "--", "sh", "-c", f"echo '{RESULT}' > \"$ORION_RESULTS_PATH\"; exec sleep {seconds}"]  # fmt: skip
        burning = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(burners)]
        try:
            start = time.perf_counter()
            with Path(tmp, "log").open("w+") as log:
                child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
                threads = rss = 0
                while child.poll() is None:
                    now_threads, now_rss = _proc(child.pid)
                    threads, rss = max(threads, now_threads), max(rss, now_rss)
                    time.sleep(0.05)
                wall = time.perf_counter() - start
                log.seek(0)
                text = log.read()
        finally:
            for burner in burning:
                burner.kill()
                burner.wait()
        db = sqlite3.connect(f"{tmp}/store.db")
        (completed,) = db.execute(
            "SELECT count(*) FROM trials WHERE status = 'completed'"
        ).fetchone()
        (attempts,) = db.execute("SELECT count(*) FROM attempts").fetchone()
        db.close()
    late = re.search(r"p99 (\d+) ms, max (\d+) ms", text)
    if child.returncode != 0 or late is None:
        print(text[-3000:], file=sys.stderr)
    return {
        "exit": child.returncode,
        "wall_s": wall,
        "completed": completed,
        "attempts": attempts,
        "reclaims": text.count("reclaimed"),
        "threads": threads,
        "rss_mib": rss / 1024,
        "p99_ms": float(late.group(1)) if late else float("nan"),
        "max_ms": float(late.group(2)) if late else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burners", type=int, nargs="*", default=[0, 2])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; {args.trials} x sleep "
          f"{args.seconds:g}, --heartbeat {args.heartbeat:g}, SQLite")  # fmt: skip
    keys = ["exit", "wall_s", "completed", "attempts", "reclaims", "threads", "rss_mib", "p99_ms",
            "max_ms"]  # fmt: skip
    print(f"{'burners':<8}{'run':<5}" + "".join(f"{k:>11}" for k in keys))
    medians = {}
    for burners in args.burners:
        rows = [
            one_run(args.trials, args.seconds, args.heartbeat, burners) for _ in range(args.runs)
        ]
        for i, row in enumerate(rows, start=1):
            print(f"{burners:<8}{i:<5}" + "".join(f"{row[k]:>11.1f}" for k in keys))
        medians[burners] = median = {k: statistics.median(r[k] for r in rows) for k in keys}
        print(f"{burners:<8}{'med':<5}" + "".join(f"{median[k]:>11.1f}" for k in keys))
    for burners, median in medians.items():
        print(
            f"ratio wall / sleep with {burners} burners: {median['wall_s'] / args.seconds:.3f} "
            f"({median['wall_s']:.2f} s; target < 9 s), completed {median['completed']:.0f}/"
            f"{args.trials}, reclaims {median['reclaims']:.0f}, threads {median['threads']:.0f}, "
            f"p99 late {median['p99_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
