"""
A start-up storm: many ``worker`` processes started together on one machine, no faults.

Starts ``--workers`` workers of ``--lanes`` lanes at once on a fresh store (PostgreSQL when
``ASYNC_CONSUMER_TEST_POSTGRES_URL`` is set, else SQLite), with ``--trials`` Python trials that
sleep ``--seconds`` each, and counts the attempts that did not complete: a healthy trial
reclaimed because its worker's beats fell behind during the storm is one. The figure to
watch is ``reclaimed`` (target: 0). Each worker's heartbeat writes are timed too (``-v``: how
late each tick's write ended after its due time): the median of the workers' p99 and the
largest lateness of any.

    python benchmarks/storm.py [--workers 24] [--lanes 8] [--heartbeat 1] [--trials 192]
        [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import anyio

from async_consumer import Trial
from async_consumer.stores import store_from_url

TRIAL = (
    "import json, os, sys, time; time.sleep(float(sys.argv[1])); "
    "json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


async def _add(url: str, count: int) -> None:
    async with store_from_url(url) as store:
        await store.add(Trial(id=f"t{i:04d}") for i in range(count))


async def _outcomes(url: str) -> Counter[str]:
    async with store_from_url(url) as store:
        trials = await store.list()
    return Counter(
        f"{a.outcome.status}/{a.outcome.reason or '-'}"
        for t in trials
        for a in t.attempts
        if a.outcome
    )


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=192)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL")
    schema = f"storm_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        url = f"{base}?schema={schema}" if base else f"sqlite:///{Path(tmp).resolve()}/store.db"
        anyio.run(_add, url, args.trials)
        argv = [sys.executable, "-m", "async_consumer._cli", "-v", "worker", "--store", url,
                "-j", str(args.lanes), "--heartbeat", str(args.heartbeat),
                "--base-dir", f"{tmp}/trials", "--code-change", "ignore", "--",
                sys.executable, "-c", TRIAL, str(args.seconds)]  # fmt: skip
        began = time.monotonic()
        workers = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(args.workers)
        ]
        errors = [worker.communicate()[1].decode() for worker in workers]
        seconds = time.monotonic() - began
        outcomes = anyio.run(_outcomes, url)
        if base:
            anyio.run(_drop, base, schema)
    reclaimed = sum(len(re.findall(r"reclaimed(?::| from)", e)) for e in errors)
    late = [re.search(r"late p50 (\d+) ms, p99 (\d+) ms, max (\d+) ms", e) for e in errors]
    p99s = [int(m[2]) for m in late if m]
    maxes = [int(m[3]) for m in late if m]
    figures = {
        "workers": args.workers,
        "lanes": args.lanes,
        "heartbeat": args.heartbeat,
        "trials": args.trials,
        "seconds": round(seconds, 1),
        "outcomes": dict(outcomes),
        "not_completed": sum(n for k, n in outcomes.items() if not k.startswith("completed")),
        "reclaimed": reclaimed,
        "rejected": sum(e.count("result not recorded") for e in errors),
        "beat_late_p99_ms_median": statistics.median(p99s) if p99s else None,
        "beat_late_max_ms": max(maxes, default=None),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
