"""
Heartbeat writes per second: one a tick per worker, not one a tick per trial.

W ``async-consumer worker`` processes (``-j J`` each) share one store (SQLite, or PostgreSQL with
``--postgres URL``), W x J trials that each sleep S seconds, a heartbeat every I seconds. Each
worker logs (``-v``) how many heartbeat writes it sent; the writes per second over the trials'
time are compared with W / I (one write a tick per worker, the target) and with W x J / I (one
a tick per trial, what the store received before heartbeats were coalesced).

    python benchmarks/store_beats.py [--workers 4] [--jobs 50] [--seconds 6] [--heartbeat 0.5]
                                     [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

COMMAND = shutil.which("async-consumer") or str(Path(sys.executable).with_name("async-consumer"))
RESULT = '[{"name": "loss", "type": "objective", "value": 1}]'


def run_fleet(
    url: str, workers: int, jobs: int, seconds: float, heartbeat: float, tmp: str
) -> list[int]:
    """Add the trials, run the workers to the end; each worker's heartbeat writes."""
    params = Path(tmp, "params.jsonl")
    params.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(workers * jobs)))
    trial = f"echo '{RESULT}' > \"$ORION_RESULTS_PATH\"; exec sleep {seconds}"
    subprocess.run([COMMAND, "add", "--params", str(params), "--store", url], check=True,
                   capture_output=True)  # fmt: skip
    argv = [COMMAND, "-v", "worker", "--store", url, "-j", str(jobs), "--heartbeat", str(heartbeat),
            "--base-dir", f"{tmp}/trials", "--", "sh", "-c", trial]  # fmt: skip
    fleet = [
        subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=tmp) for _ in range(workers)
    ]
    writes = []
    for worker in fleet:
        _, err = worker.communicate()
        found = re.search(r"(\d+) heartbeat writes", err)
        if worker.returncode != 0 or found is None:
            print(err[-2000:], file=sys.stderr)
        writes.append(int(found.group(1)) if found else 0)
    return writes


async def drop_schema(url: str, schema: str) -> None:
    """Drop a benchmark's PostgreSQL schema (``best.py`` uses it too)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beats-") as tmp:
        schema = f"beats_{uuid.uuid4().hex[:12]}"
        url = f"{args.postgres}?schema={schema}" if args.postgres else f"sqlite:///{tmp}/store.db"
        start = time.perf_counter()
        try:
            writes = run_fleet(url, args.workers, args.jobs, args.seconds, args.heartbeat, tmp)
        finally:
            if args.postgres:
                anyio.run(drop_schema, args.postgres, schema)
        wall = time.perf_counter() - start
    per_second = sum(writes) / args.seconds
    target = args.workers / args.heartbeat
    before = args.workers * args.jobs / args.heartbeat
    print(f"{'store':<12}{'workers':>8}{'jobs':>6}{'trials':>8}{'writes':>8}{'writes/s':>10}"
          f"{'W/I':>8}{'W*J/I':>8}{'wall s':>8}")  # fmt: skip
    store = "postgresql" if args.postgres else "sqlite"
    print(f"{store:<12}{args.workers:>8}{args.jobs:>6}{args.workers * args.jobs:>8}{sum(writes):>8}"
          f"{per_second:>10.1f}{target:>8.1f}{before:>8.1f}{wall:>8.1f}")  # fmt: skip
    print(f"per-worker writes: {writes}")
    print(
        f"ratio writes/s / (workers / interval): {per_second / target:.2f} (target about 1; "
        f"one write a trial would be {before / target:.0f})"
    )


if __name__ == "__main__":
    main()
