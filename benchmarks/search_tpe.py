"""
TPE against random search with the same budget, as ``tests/test_search_fleet.py`` asserts it:
four ``run`` processes share one PostgreSQL store, ``-n 60`` in all, ``--seed 1``, on a bowl
whose bottom is at (1.2, -0.7) in the square [-100, 100]^2 (``--pruner none``, trials instant).
Each repeat uses fresh schemas (dropped afterwards); random's draws are the same every time
(the k-th trial's parameters depend on the seed alone), TPE's depend on which trials finished
before each ask.

    ASYNC_CONSUMER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python benchmarks/search_tpe.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import anyio

from async_consumer.stores import store_from_url

BOWL = (
    "import json, os, sys; a = sys.argv; x = float(a[a.index('-x') + 1]); "
    "y = float(a[a.index('-y') + 1]); "
    "json.dump((x - 1.2) ** 2 + (y + 0.7) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


async def _best(url: str) -> tuple[int, float, float]:
    """(number of trials, best objective, median objective of the later half) of the search."""
    async with store_from_url(url) as store:
        stored = await store.list()
    values = {
        int(t.id.rsplit("-", 1)[1]): t.outcome.objective
        for t in stored
        if t.outcome and t.outcome.objective is not None
    }
    later = [v for k, v in values.items() if k > len(stored) // 2]
    return len(stored), min(values.values()), statistics.median(later)


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _search(base: str, sampler: str, n: int, processes: int, seed: int) -> tuple[int, float, float]:
    """Run the search with ``processes`` processes; what :func:`_best` reads from its store."""
    schema = f"bench_{uuid.uuid4().hex[:16]}"
    url = f"{base}?schema={schema}"
    try:
        with tempfile.TemporaryDirectory() as directory:
            argv = [sys.executable, "-m", "async_consumer._cli", "-q", "run", "--store", url]
            argv += ["-j", "2", "--base-dir", str(Path(directory) / "trials")]
            argv += ["--pruner", "none", "-n", str(n), "--sampler", sampler, "--seed", str(seed)]
            argv += ["--", sys.executable, "-c", BOWL]
            argv += ["-x~uniform(-100, 100)", "-y~uniform(-100, 100)"]
            runs = [
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for _ in range(processes)
            ]
            for process in runs:
                _, err = process.communicate(timeout=900)
                if process.returncode != 0:
                    raise SystemExit(err.decode())
            return anyio.run(_best, url)
    finally:
        anyio.run(_drop, base, schema)


def main() -> None:
    """
    Run TPE and random ``--repeats`` times each; print their bests and the median objective
    of their later half (trials ``k > n/2``), and the median ratio of the bests.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-n", type=int, default=60)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    base = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL")
    if not base:
        msg = "set ASYNC_CONSUMER_TEST_POSTGRES_URL to a PostgreSQL database"
        raise SystemExit(msg)
    head = f"{'repeat':<8}{'tpe n':>6}{'tpe best':>10}{'later half':>12}"
    print(f"{head}{'random n':>10}{'random best':>13}{'later half':>12}")
    ratios = []
    for repeat in range(1, args.repeats + 1):
        tpe_n, tpe, tpe_later = _search(base, "tpe", args.n, args.processes, args.seed)
        rnd_n, rnd, rnd_later = _search(base, "random", args.n, args.processes, args.seed)
        ratios.append(rnd / tpe if tpe > 0 else float("inf"))
        row = f"{repeat:<8}{tpe_n:>6}{tpe:>10.4g}{tpe_later:>12.4g}"
        print(f"{row}{rnd_n:>10}{rnd:>13.4g}{rnd_later:>12.4g}", flush=True)
    print(f"random's best / TPE's best, median of {args.repeats}: {statistics.median(ratios):.3g}")


if __name__ == "__main__":
    main()
