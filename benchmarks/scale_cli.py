"""
``async-consumer run -j 1000 --heartbeat 0.5``: a thousand five-second trials from the command line.

1,000 trials of ``sleep 5`` (one line each in a parameter file) through ``async-consumer run
-j 1000 --heartbeat 0.5`` on a fresh SQLite store, with and without 2 CPU-burning processes
beside it. Measures, per run: the wall time of the command, how many trials completed (from the
store), how many leases were reclaimed (``reclaimed`` lines in its log), the peak thread count
and RSS of the command's process (sampled from ``/proc`` every 50 ms), and how late its
heartbeat writes came (p99: from the line ``-v`` logs at the end). Targets: all completed, 0
reclaims, wall < 9 s, <= 10 threads, p99 late < 100 ms. The ratio line compares the wall time
with the 5 s the trials sleep, and with a floor measured in the same run beside the same
burners: the same 1,000 scripts started by a bare ``os.posix_spawn`` loop, each in its own session
and trial directory, and waited for. Run through ``benchmarks/scale.py --cli``.

The burners run in sessions of their own, as other work on a machine does (another terminal,
another service). With ``--same-session`` they share the command's session: the kernel's
autogroup scheduler (``/proc/sys/kernel/sched_autogroup_enabled``) then splits one session's CPU
share between them and the command, and on this 2-core machine even the floor takes over 9 s.

Every run's files are kept until the end: on an ext4 file system without a journal, creating a
file costs a scan past every inode deleted in the last minute or more (``recently_deleted`` in the
kernel's inode allocator), and deleting one run's 7,000 files before the next made its file
creation cost about 5 ms of kernel CPU each, more than the command's own work.

    python benchmarks/scale_cli.py [--trials 1000] [--seconds 5] [--heartbeat 0.5] [--runs 3]
                                   [--burners 0 2] [--same-session] [--dir DIR]
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


def _burn(burners: int, same_session: bool) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=not same_session)
        for _ in range(burners)
    ]


def floor(tmp: str, trials: int, seconds: float, burners: int, same_session: bool) -> float:
    """Wall time of a bare posix_spawn loop of the same scripts, beside the same burners."""
    script = f"echo '{RESULT}' > \"$ORION_RESULTS_PATH\"; exec sleep {seconds}"
    burning = _burn(burners, same_session)
    try:
        start = time.perf_counter()
        pids = []
        for i in range(trials):
            trial_dir = Path(tmp, str(i))
            trial_dir.mkdir()
            env = dict(os.environ, ORION_RESULTS_PATH=str(trial_dir / "results.json"))
            pids.append(os.posix_spawn("/bin/sh", ["sh", "-c", script], env, setsid=True))
        for pid in pids:
            os.waitpid(pid, 0)
        return time.perf_counter() - start
    finally:
        for burner in burning:
            burner.kill()
            burner.wait()


def one_run(
    tmp: str, trials: int, seconds: float, heartbeat: float, burners: int, same_session: bool
) -> dict[str, float]:
    """Run the floor, then the command, in ``tmp`` (beside ``burners`` burners); their figures."""
    Path(tmp, "floor").mkdir()
    floor_s = floor(f"{tmp}/floor", trials, seconds, burners, same_session)
    params = Path(tmp, "params.jsonl")
    params.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(trials)))
    store = f"sqlite:///{tmp}/store.db"
    argv = [COMMAND, "-v", "run", "--params", str(params), "-j", str(trials),
            "--heartbeat", str(heartbeat), "--store", store, "--base-dir", f"{tmp}/trials",
            "--", "sh", "-c", f"echo '{RESULT}' > \"$ORION_RESULTS_PATH\"; exec sleep {seconds}"]  # fmt: skip
    burning = _burn(burners, same_session)
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
    (completed,) = db.execute("SELECT count(*) FROM trials WHERE status = 'completed'").fetchone()
    (attempts,) = db.execute("SELECT count(*) FROM attempts").fetchone()
    db.close()
    late = re.search(r"p99 (\d+) ms, max (\d+) ms", text)
    if child.returncode != 0 or late is None:
        print(text[-3000:], file=sys.stderr)
    return {
        "exit": child.returncode,
        "wall_s": wall,
        "floor_s": floor_s,
        "ratio": wall / floor_s,
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
    parser.add_argument("--same-session", action="store_true", help="burners in our session")
    parser.add_argument("--dir", default=None, help="where the runs' files go (default: $TMPDIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-cli-", dir=args.dir) as root:
        table(root, args)


def table(root: str, args: argparse.Namespace) -> None:
    """Print the table of runs and the ratio lines."""
    sessions = "the command's session" if args.same_session else "sessions of their own"
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; {args.trials} x sleep "
          f"{args.seconds:g}, --heartbeat {args.heartbeat:g}, SQLite in {root}; burners in "
          f"{sessions}")  # fmt: skip
    keys = ["exit", "wall_s", "floor_s", "ratio", "completed", "attempts", "reclaims", "threads", "rss_mib", "p99_ms",
            "max_ms"]  # fmt: skip
    print(f"{'burners':<8}{'run':<5}" + "".join(f"{k:>11}" for k in keys))
    medians = {}
    for burners in args.burners:
        rows = [
            one_run(
                tempfile.mkdtemp(dir=root),
                args.trials,
                args.seconds,
                args.heartbeat,
                burners,
                args.same_session,
            )
            for _ in range(args.runs)
        ]
        for i, row in enumerate(rows, start=1):
            print(f"{burners:<8}{i:<5}" + "".join(f"{row[k]:>11.1f}" for k in keys))
        medians[burners] = median = {k: statistics.median(r[k] for r in rows) for k in keys}
        print(f"{burners:<8}{'med':<5}" + "".join(f"{median[k]:>11.1f}" for k in keys))
    for burners, median in medians.items():
        print(
            f"ratio wall / sleep with {burners} burners: {median['wall_s'] / args.seconds:.3f} "
            f"({median['wall_s']:.2f} s; target < 9 s), wall / floor {median['ratio']:.3f} (floor "
            f"{median['floor_s']:.2f} s), completed {median['completed']:.0f}/"
            f"{args.trials}, reclaims {median['reclaims']:.0f}, threads {median['threads']:.0f}, "
            f"p99 late {median['p99_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
