"""
Store throughput: reserve + heartbeat + finish cycles per second, and reserve with a full table.

Run ``python benchmarks/store.py`` (PostgreSQL from ``--postgres URL`` or
``ASYNC_CONSUMER_TEST_POSTGRES_URL``; its rows are skipped without one). Workers are separate
processes, as in production: each opens its own store (its own connection or pool), all start
together behind a barrier, and a row's rate is every cycle over the time from the first start to
the last finish. The "tasks" row runs asyncio tasks sharing one process and one pool instead.

``--cache`` times reserve, heartbeat_many and finish on a direct connection with asyncpg's
statement cache (its default, 100), without it (0, which PgBouncer in transaction mode needs),
and with the store's own connection (cache off, each query in one round trip), rounds
interleaved: medians of each call and their ratios.

``--many`` times instead 1,000 heartbeats one by one against one ``heartbeat_many`` of the
same 1,000 leases, rounds interleaved, on each store (medians, and their ratio).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import anyio

from async_consumer._models import Lease, Outcome, Result, Status, Trial
from async_consumer.stores import Reservation, TrialStore, open_store

Span = tuple[float, float, int]
"""When a worker started and ended (``time.monotonic``, one clock for every process), and its cycles."""


def _outcome(lease: Lease) -> Outcome:
    now = datetime.now(UTC)
    return Outcome(
        trial_id=lease.trial_id,
        attempt=lease.trial.attempt,
        status=Status.COMPLETED,
        results=(Result(name="loss", type="objective", value=0.25),),
        argv=("python", "train.py", "--lr", "0.01"),
        started_at=now,
        ended_at=now,
    )


async def _drain(store: TrialStore, worker: str, counts: list[int]) -> None:
    while (lease := await store.reserve(worker, Reservation(host="bench"))) is not None:
        await store.heartbeat(lease)
        await store.finish(lease, _outcome(lease))
        counts.append(1)


async def _work(url: str, tasks: int, barrier: Barrier) -> Span:
    counts: list[int] = []
    async with await open_store(url) as store:
        barrier.wait()  # blocks the event loop, but nothing runs on it yet
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(_drain, store, f"{os.getpid()}-{i}", counts)
        return start, time.monotonic(), len(counts)


def _child(url: str, tasks: int, barrier: Barrier, spans: Queue[Span]) -> None:
    spans.put(anyio.run(_work, url, tasks, barrier))


async def _add(url: str, count: int, prefix: str = "t") -> None:
    trials = [Trial(id=f"{prefix}{i}", params={"lr": 0.01, "layers": i % 7}) for i in range(count)]
    async with await open_store(url) as store:
        await store.add(trials)


def cycle_rate(url: str, processes: int, tasks: int, count: int) -> tuple[int, float]:
    """Drain ``count`` new trials with worker processes; return the cycles and the seconds."""
    anyio.run(_add, url, count)
    ctx = multiprocessing.get_context("spawn")
    barrier, spans = ctx.Barrier(processes), ctx.Queue()
    args = (url, tasks, barrier, spans)
    children = [ctx.Process(target=_child, args=args) for _ in range(processes)]
    for child in children:
        child.start()
    done = [spans.get() for _ in children]
    for child in children:
        child.join()
    return sum(d[2] for d in done), max(d[1] for d in done) - min(d[0] for d in done)


async def _reserve_all(url: str, count: int, batches: int = 10) -> float:
    async with await open_store(url) as store:
        times = []
        for _ in range(batches):
            start = time.monotonic()
            for _ in range(count // batches):
                assert await store.reserve("bench") is not None
            times.append(time.monotonic() - start)
        return min(times) * batches


def reserve_rate(url: str, finished: int, count: int) -> tuple[int, float]:
    """
    Reserve ``count`` new trials queued behind ``finished`` completed ones.

    Returns the count and the seconds it takes at the pace of the fastest of ten batches, as
    ``timeit`` does: other load on the machine only ever slows a batch down.
    """
    # even with none finished: the same vacuum and checkpoint, so both runs start alike
    (_fill_sqlite if url.startswith("sqlite") else _fill_postgres)(url, finished)
    anyio.run(_add, url, count, "new")
    return count, anyio.run(_reserve_all, url, count)


def _finished_row() -> tuple[str, str]:
    trial = Trial(id="x", params={"lr": 0.01, "layers": 3}).model_dump_json(exclude={"attempt"})
    outcome = _outcome(Lease(trial=Trial(id="x"), token=1, worker="w")).model_dump_json()
    return trial, outcome


def _fill_sqlite(url: str, finished: int) -> None:
    anyio.run(_add, url, 0)  # creates the schema
    trial, outcome = _finished_row()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        conn.executemany(
            "INSERT INTO trials (id, trial, status, token, worker, heartbeat_at)"
            " VALUES (?, ?, 'completed', 1, 'w', 0)",
            ((f"done{i}", trial) for i in range(finished)),
        )
        conn.executemany(
            "INSERT INTO attempts VALUES (?, 1, 1, 'w', 'h', 0, 0, ?)",
            ((f"done{i}", outcome) for i in range(finished)),
        )
    conn.close()


def _fill_postgres(url: str, finished: int) -> None:
    anyio.run(_add, url, 0)
    anyio.run(_fill_postgres_async, url, finished)


async def _fill_postgres_async(url: str, finished: int) -> None:
    import asyncpg

    base, _, schema = url.partition("?schema=")
    trial, outcome = _finished_row()
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(
            f"INSERT INTO {schema}.trials (id, trial, status, token, worker, heartbeat_at)"
            " SELECT 'done' || g, $1, 'completed', 1, 'w', now()"
            " FROM generate_series(1, $2) AS g",
            trial,
            finished,
        )
        await conn.execute(
            f"INSERT INTO {schema}.attempts SELECT 'done' || g, 1, 1, 'w', 'h', now(), now(), $1"
            " FROM generate_series(1, $2) AS g",
            outcome,
            finished,
        )
        # a long-lived table is vacuumed and analyzed by autovacuum; do not time its first run
        await conn.execute(f"VACUUM ANALYZE {schema}.trials, {schema}.attempts")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _drop(url: str, schemas: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def _print(name: str, setup: str, done: int, seconds: float, target: str = "") -> float:
    rate = done / seconds
    print(f"{name:<11} {setup:<34} {done:>7} {seconds:>8.2f} {rate:>9.0f}  {target}")
    return rate


def sqlite_rows(cycles: int, finished: int) -> str:
    """Print the SQLite rows, on files in a temporary directory; return the reserve ratio."""
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:

        def url() -> str:
            return f"sqlite:///{tmp / uuid.uuid4().hex}.db"

        _print("SQLite", "1 process", *cycle_rate(url(), 1, 1, cycles), ">= 1000/s")
        _print("SQLite", "4 processes", *cycle_rate(url(), 4, 1, cycles))
        empty = _print("SQLite", "reserve only, empty table", *reserve_rate(url(), 0, 2000))
        full = _print(
            "SQLite", f"reserve, {finished:,} finished", *reserve_rate(url(), finished, 2000)
        )
    finally:
        shutil.rmtree(tmp)
    return f"SQLite {full / empty:.2f}x"


def postgres_rows(server: str, cycles: int, finished: int) -> str:
    """Print the PostgreSQL rows, each in a schema of its own; return the reserve ratio."""
    schemas: list[str] = []

    def url() -> str:
        schemas.append(f"bench_{uuid.uuid4().hex[:12]}")
        return f"{server}?schema={schemas[-1]}"

    try:
        _print("PostgreSQL", "1 process", *cycle_rate(url(), 1, 1, cycles))
        _print("PostgreSQL", "8 processes", *cycle_rate(url(), 8, 1, cycles), ">= 500/s")
        _print("PostgreSQL", "8 tasks, 1 process, pool of 10", *cycle_rate(url(), 1, 8, cycles))
        empty = _print("PostgreSQL", "reserve only, empty table", *reserve_rate(url(), 0, 2000))
        full = _print(
            "PostgreSQL", f"reserve, {finished:,} finished", *reserve_rate(url(), finished, 2000)
        )
    finally:
        anyio.run(_drop, server, schemas)
    return f"PostgreSQL {full / empty:.2f}x"


async def _beat_times(url: str, count: int, rounds: int) -> tuple[float, float]:
    """Median seconds of ``count`` heartbeats one by one, and of one ``heartbeat_many``."""
    await _add(url, count)
    async with await open_store(url) as store:
        leases = await store.reserve_many("bench", count)
        single, many = [], []
        for _ in range(rounds):  # interleaved: both see the same load on the machine
            start = time.perf_counter()
            for lease in leases:
                await store.heartbeat(lease)
            single.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert await store.heartbeat_many(leases) == []
            many.append(time.perf_counter() - start)
    return statistics.median(single), statistics.median(many)


def many_rows(server: str | None, count: int = 1000, rounds: int = 7) -> None:
    """Print, for each store, ``count`` beats one by one against one batched beat, and the ratio."""
    tmp, schemas = Path(tempfile.mkdtemp(prefix="store-bench-")), [f"bench_{uuid.uuid4().hex[:12]}"]
    urls = {"SQLite": f"sqlite:///{tmp / 'many.db'}"}
    if server:
        urls["PostgreSQL"] = f"{server}?schema={schemas[0]}"
    print(f"{'store':<11} {count:,} heartbeats (ms)  one heartbeat_many (ms)  ratio")
    ratios = []
    try:
        for name, url in urls.items():
            single, many = anyio.run(_beat_times, url, count, rounds)
            print(
                f"{name:<11} {single * 1000:>20.1f}  {many * 1000:>23.1f}  {single / many:>5.0f}x"
            )
            ratios.append(f"{name} {single / many:.0f}x")
    finally:
        shutil.rmtree(tmp)
        if server:
            anyio.run(_drop, server, schemas)
    print(f"{count:,} heartbeats one by one / one heartbeat_many: {', '.join(ratios)}")


async def _timed_cycles(store: TrialStore, prefix: str, count: int) -> dict[str, list[float]]:
    """Seconds of each call of ``count`` reserve, heartbeat_many, finish cycles."""
    await store.add(Trial(id=f"{prefix}-{i}", params={"lr": 0.01}) for i in range(count))
    times: dict[str, list[float]] = {"reserve": [], "heartbeat_many": [], "finish": []}
    for _ in range(count):
        start = time.perf_counter()
        lease = await store.reserve("bench", Reservation(host="bench"))
        times["reserve"].append(time.perf_counter() - start)
        assert lease is not None
        start = time.perf_counter()
        assert await store.heartbeat_many([lease]) == []
        times["heartbeat_many"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await store.finish(lease, _outcome(lease))
        times["finish"].append(time.perf_counter() - start)
    return times


CACHE_SETTINGS = ("cache 100", "cache 0", "store's")
"""asyncpg's default; its cache off alone; the store's own connection (cache off, one round trip)."""


async def _cache_pool(server: str, setting: str) -> Any:
    import asyncpg

    from async_consumer.stores._postgres_connection import connect_pool

    if setting == "store's":
        return await connect_pool(server, 2)
    size = 100 if setting == "cache 100" else 0
    return await asyncpg.create_pool(server, min_size=1, max_size=2, statement_cache_size=size)


async def _cache_times(
    server: str, schema: str, rounds: int, count: int
) -> dict[str, dict[str, list[float]]]:
    from async_consumer.stores import PostgresStore

    pools = {setting: await _cache_pool(server, setting) for setting in CACHE_SETTINGS}
    times: dict[str, dict[str, list[float]]] = {setting: {} for setting in CACHE_SETTINGS}
    try:
        stores = {s: await PostgresStore.open(pools[s], schema=schema) for s in CACHE_SETTINGS}
        for n in range(rounds):  # interleaved: each sees the same load on the machine
            order = CACHE_SETTINGS[n % 3 :] + CACHE_SETTINGS[: n % 3]
            for setting in order:
                cycles = await _timed_cycles(stores[setting], f"{n}-{setting[-3:]}", count)
                for call, seconds in cycles.items():
                    times[setting].setdefault(call, []).extend(seconds)
    finally:
        for pool in pools.values():
            await pool.close()
    return times


def cache_rows(server: str, rounds: int = 12, count: int = 100) -> None:
    """Print each call's median with and without asyncpg's statement cache, and the ratios."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        times = anyio.run(_cache_times, server, schema, rounds, count)
    finally:
        anyio.run(_drop, server, [schema])
    print(f"{rounds * count} calls each, direct connection; medians in ms")
    print(
        f"{'call':<15} {'cache 100':>10} {'cache 0':>10} {'store':>10} {'0/100':>7} {'store/100':>9}"
    )
    for call in times["cache 100"]:
        cached, off, ours = (statistics.median(times[s][call]) for s in CACHE_SETTINGS)
        print(
            f"{call:<15} {cached * 1000:>10.3f} {off * 1000:>10.3f} {ours * 1000:>10.3f}"
            f" {off / cached:>6.2f}x {ours / cached:>8.2f}x"
        )


def main() -> None:
    """Run every row and print the table and the reserve ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cycles", type=int, default=5000, help="trials per row")
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL"))
    parser.add_argument("--many", action="store_true", help="batched heartbeats against single")
    parser.add_argument("--cache", action="store_true", help="asyncpg's statement cache or not")
    args = parser.parse_args()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.cache:
        cache_rows(args.postgres)
        return
    if args.many:
        many_rows(args.postgres)
        return
    print(f"{'store':<11} {'workers':<34} {'cycles':>7} {'seconds':>8} {'per s':>9}  target")
    ratios = [sqlite_rows(args.cycles, args.finished)]
    if args.postgres:
        ratios.append(postgres_rows(args.postgres, args.cycles, args.finished))
    else:
        print("PostgreSQL  skipped: pass --postgres URL or set ASYNC_CONSUMER_TEST_POSTGRES_URL")
    print(f"reserve rate, {args.finished:,} finished / empty table: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
