"""
Store costs against the store's size: a worker's calls with 1,000 and with 100,000 trials.

Two PostgreSQL stores (schemas) are filled alike but for their size: an experiment of N trials
with 10 experiments of N trials each beside it in the same store (11 N trials in all), 90 % of
them completed (an attempt with its outcome each), 10 % waiting, and 400 reserved by other
workers (a fleet's running trials: the fleet does not grow with the store). Then, on each store,
one worker's cycle again and again with the store's own code: ``reserve``, ``heartbeat_many`` of
the 4 leases it holds, ``finish`` of the oldest; and the calls of its timer: ``held_leases``,
``reclaim_stale``, ``record_worker``. Rounds of the two stores are interleaved, so both see the
same load on the machine; each call's p50 and p99 (ms), and large / small.

    python benchmarks/store_size.py [--sizes 1000 100000] [--samples 1000] [--postgres URL]
                                    [--explain]

``--explain`` prints each query's plan (``EXPLAIN ANALYZE``) on the largest store instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from async_consumer._fleet import WorkerInfo
from async_consumer._models import Lease, Outcome, Result, Status, Trial
from async_consumer.stores import PostgresStore, Reservation

EXPERIMENTS = 11
"""The measured experiment and the 10 beside it."""
RESERVED = 400
"""Trials reserved by the rest of the fleet, whatever the store's size."""
HELD = 4
"""Leases the measuring worker holds (its -j)."""
HOLDER = "benchhost/1/1"
CALLS = ("reserve", "heartbeat_many", "finish", "held_leases", "reclaim_stale", "record_worker")


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


async def fill(server: str, schema: str, size: int) -> None:
    """Create the store and fill it: 11 experiments of ``size`` trials, as the docstring says."""
    import asyncpg

    store = await PostgresStore.open(server, schema=schema)
    await store.aclose()
    outcome = _outcome(Lease(trial=Trial(id="x"), token=1, worker="w")).model_dump_json()
    done = int(size * 0.9)
    conn = await asyncpg.connect(server)
    try:
        # trials in the order they would have been added: experiment after experiment; the
        # first 90 % of each completed, the rest waiting
        await conn.execute(
            f"""
            INSERT INTO "{schema}".trials (id, trial, status, token, worker, heartbeat_at,
                objective)
            SELECT id, json_build_object('id', id, 'params',
                    json_build_object('lr', 0.01, 'layers', g % 7), 'experiment', 'e' || e)::text,
                CASE WHEN g < $2 THEN 'completed' ELSE 'new' END,
                CASE WHEN g < $2 THEN 1 ELSE 0 END, CASE WHEN g < $2 THEN 'w' END,
                CASE WHEN g < $2 THEN now() END, CASE WHEN g < $2 THEN random() END
            FROM generate_series(0, $3 - 1) AS e, generate_series(0, $1 - 1) AS g,
                LATERAL (SELECT 'e' || e || '-' || g AS id) AS i
            ORDER BY e, g""",
            size,
            done,
            EXPERIMENTS,
        )
        await conn.execute(
            f"""
            INSERT INTO "{schema}".attempts
            SELECT id, 1, 1, 'w', 'h', now(), now(), $1 FROM "{schema}".trials
            WHERE status = 'completed'""",
            outcome,
        )
        # the rest of the fleet's running trials: the first waiting ones of the other
        # experiments, reserved by other workers and beating
        await conn.execute(
            f"""
            WITH r AS (
                UPDATE "{schema}".trials SET status = 'reserved', token = 1, worker = 'other',
                    holder = 'otherhost/2/2', heartbeat_at = now()
                WHERE seq IN (SELECT seq FROM "{schema}".trials
                    WHERE status = 'new' AND id NOT LIKE 'e0-%' ORDER BY seq LIMIT $1)
                RETURNING id
            ) INSERT INTO "{schema}".attempts SELECT id, 1, 1, 'other', 'h', now(), now(), NULL
            FROM r""",
            RESERVED,
        )
        # a long-lived table is vacuumed and analyzed by autovacuum; do not time its first run
        await conn.execute(f'VACUUM ANALYZE "{schema}".trials, "{schema}".attempts')
    finally:
        await conn.close()


class Bench:
    """One store and the worker that measures it: the leases it holds, each call's times."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.held: list[Lease] = []
        self.times: dict[str, list[float]] = {call: [] for call in CALLS}
        self.worker = WorkerInfo(name="bench", host="benchhost", pid=1)
        self.added = 0

    async def timed(self, call: str, op: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        result = await op()
        self.times[call].append(time.perf_counter() - start)
        return result

    async def cycle(self) -> None:
        """One reservation, one beat of the held leases, one finish (and the timer's calls)."""
        store = self.store
        self.added += 1  # as a sampler would: the waiting trials stay as many (not timed)
        await store.add(
            [
                Trial(
                    id=f"added-{self.added}-{uuid.uuid4().hex[:8]}",
                    params={"lr": 0.01},
                    experiment="e0",
                )
            ]
        )
        lease = await self.timed(
            "reserve", lambda: store.reserve("bench", Reservation(host="benchhost", holder=HOLDER))
        )
        assert lease is not None
        self.held.append(lease)
        beating = self.held[-HELD:]
        assert await self.timed("heartbeat_many", lambda: store.heartbeat_many(beating)) == []
        if len(self.held) >= HELD:
            oldest = self.held.pop(0)
            await self.timed("finish", lambda: store.finish(oldest, _outcome(oldest)))
        await self.timed("held_leases", lambda: store.held_leases("benchhost/"))
        # the rest of the fleet beats: none of its leases is stale
        assert await self.timed("reclaim_stale", lambda: store.reclaim_stale(3600.0)) == []
        await self.timed("record_worker", lambda: store.record_worker(self.worker))


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(server: str, schemas: dict[int, str], samples: int, rounds: int) -> None:
    """Interleaved rounds of cycles on each store; print each call's p50 and p99."""
    benches = {
        size: Bench(await PostgresStore.open(server, schema=s)) for size, s in schemas.items()
    }
    try:
        for _ in range(HELD):  # warm up: the leases the worker holds, the pool's connections
            for bench in benches.values():
                await bench.cycle()
        for bench in benches.values():
            bench.times = {call: [] for call in CALLS}
        for n in range(rounds):
            order = list(benches.values()) if n % 2 else list(benches.values())[::-1]
            for bench in order:
                for _ in range(samples // rounds):
                    await bench.cycle()
    finally:
        for bench in benches.values():
            await bench.store.aclose()
    sizes = sorted(benches)
    small, large = sizes[0], sizes[-1]
    header = "".join(f"  {size:>9,} p50   p99" for size in sizes)
    print(f"{'call':<15}{header}   p50 {large:,}/{small:,}  p99 {large:,}/{small:,}")
    for call in CALLS:
        cells = ""
        for size in sizes:
            times = benches[size].times[call]
            cells += f"  {_ms(times, 0.5):>13.2f} {_ms(times, 0.99):>5.2f}"
        big, little = benches[large].times[call], benches[small].times[call]
        p50 = _ms(big, 0.5) / _ms(little, 0.5)
        p99 = _ms(big, 0.99) / _ms(little, 0.99)
        print(f"{call:<15}{cells}   {p50:>12.2f}x  {p99:>12.2f}x")
    print(f"samples a call and size: {len(benches[small].times['reserve'])}; "
          f"median of the medians: {statistics.median(benches[small].times['reserve']) * 1000:.2f} ms reserve")  # fmt: skip


async def explain(server: str, schema: str) -> None:
    """Print the plan of each of the worker's queries on one store."""
    import asyncpg

    from async_consumer.stores import _postgres_sql as queries

    q = queries.queries(schema)
    conn = await asyncpg.connect(server)
    try:
        tr = conn.transaction()
        await tr.start()
        row = await conn.fetchrow(
            f'SELECT id, token FROM "{schema}".trials WHERE status = $1 LIMIT 1', "reserved"
        )
        ids, tokens = [row["id"]], [row["token"]]
        plans: dict[str, tuple[str, *tuple[object, ...]]] = {
            "reserve": (q["reserve"], "bench", "benchhost", [], True, HOLDER, True),
            "beat_many": (q["beat_many"], ids, tokens),
            "finish": (q["finish"], row["id"], row["token"], 0, 2, "completed", "{}", 0.0),
            "held": (q["held"], "benchhost/"),
            "reclaim": (q["reclaim"], 2, 3600.0, ""),
        }
        for name, (query, *args) in plans.items():
            lines = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, *args)
            print(f"-- {name}")
            print("\n".join(line[0] for line in lines))
        await tr.rollback()
    finally:
        await conn.close()


async def _beat_fleet(server: str, schema: str) -> None:
    """The rest of the fleet beats its leases (filling a large store takes minutes)."""
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        await conn.execute(
            f"UPDATE \"{schema}\".trials SET heartbeat_at = now() WHERE status = 'reserved'"
        )
    finally:
        await conn.close()


async def _drop(server: str, schemas: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(server)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    """Fill a store of each size, measure (or explain), drop them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--samples", type=int, default=1000, help="cycles a store")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--postgres", default=os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL"))
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the schemas (printed)")
    parser.add_argument(
        "--use", nargs="+", default=[], metavar="SIZE:SCHEMA", help="kept schemas, not filled"
    )
    args = parser.parse_args()
    if not args.postgres:
        parser.error("pass --postgres URL or set ASYNC_CONSUMER_TEST_POSTGRES_URL")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    used = {int(size): schema for size, schema in (pair.split(":") for pair in args.use)}
    schemas = used or {size: f"bench_size_{size}_{uuid.uuid4().hex[:8]}" for size in args.sizes}
    try:
        for size, schema in schemas.items():
            start = time.monotonic()
            if not used:
                anyio.run(fill, args.postgres, schema, size)
            anyio.run(_beat_fleet, args.postgres, schema)
            took = time.monotonic() - start
            print(f"{schema}: {EXPERIMENTS} x {size:,} trials (ready in {took:.1f} s)")
        if args.explain:
            anyio.run(explain, args.postgres, schemas[max(schemas)])
        else:
            anyio.run(measure, args.postgres, schemas, args.samples, args.rounds)
    finally:
        if args.keep or used:
            print("kept:", " ".join(schemas.values()))
        else:
            anyio.run(_drop, args.postgres, list(schemas.values()))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
