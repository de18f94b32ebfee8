"""Fixtures for the store tests: the same contract suite runs on every store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

import async_consumer.stores
from async_consumer._models import Lease, Outcome, Status, StoredTrial, Trial
from async_consumer.stores import (
    MemoryStore,
    PostgresStore,
    Reservation,
    SQLiteStore,
    TrialStore,
)

from ..bouncer import pgbouncer_url
from ..conftest import NewSchema, postgres_url
from .old_stores import v5_store_with

MakeStore = Callable[..., Awaitable[TrialStore]]
KINDS = ["memory", "sqlite", "postgres", "pgbouncer"]
"""``pgbouncer``: the PostgreSQL store through PgBouncer in transaction mode, with the URL as a
user writes it (PgBouncer's port, nothing else)."""


# reserves, beats and finishes until no trial is left, one at a time or seven (``batch``)
RACER = """
import json, sys
import anyio
from async_consumer._models import Outcome, Status
from async_consumer.stores import Finish, SQLiteStore

async def main() -> None:
    got = []
    async with SQLiteStore(sys.argv[1]) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        if sys.argv[3] == "one":
            while (lease := await store.reserve(sys.argv[2])) is not None:
                got.append(lease.trial_id)
                await store.heartbeat(lease)
                done = Outcome(trial_id=lease.trial_id, status=Status.COMPLETED)
                await store.finish(lease, done)
        else:
            while leases := await store.reserve_many(sys.argv[2], 7):
                got += [lease.trial_id for lease in leases]
                assert await store.heartbeat_many(leases) == []
                done = [Outcome(trial_id=l.trial_id, status=Status.COMPLETED) for l in leases]
                await store.finish_many([Finish(l, o) for l, o in zip(leases, done)])
    print(json.dumps(got))

anyio.run(main)
"""


def released_together(store_file: Path, mode: str) -> list[str]:
    """
    Run two worker processes on one SQLite store file, reserving ``one`` trial at a time or
    in a ``batch``, let go together once both are connected; every trial id they ran.
    """
    src = str(Path(async_consumer.stores.__file__).parents[2])
    pipe, env = subprocess.PIPE, {"PYTHONPATH": src}
    argv = [[sys.executable, "-c", RACER, str(store_file), f"w{i}", mode] for i in range(2)]
    workers = [subprocess.Popen(a, stdin=pipe, stdout=pipe, text=True, env=env) for a in argv]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for worker in workers:  # both are connected before either starts reserving
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.close()
        got = [json.loads(worker.stdout.read()) for worker in workers if worker.stdout]
        assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
            if worker.stdout:
                worker.stdout.close()
    return [trial_id for ran in got for trial_id in ran]


def make_trials(count: int, prefix: str = "t") -> list[Trial]:
    """Trials named prefix0, prefix1, ... with one parameter each."""
    return [Trial(id=f"{prefix}{i}", params={"x": i}) for i in range(count)]


async def reserved(
    store: TrialStore, worker: str = "w", request: Reservation = Reservation()
) -> Lease:
    """The lease ``store`` gives ``worker`` for ``request``; the test fails if none is waiting."""
    lease = await store.reserve(worker, request)
    assert lease is not None
    return lease


def last_outcome(trial: StoredTrial) -> Outcome:
    """The outcome of the trial's latest attempt; the test fails if it has none yet."""
    outcome = trial.attempts[-1].outcome
    assert outcome is not None
    return outcome


async def first_lease(store: TrialStore, count: int = 1) -> Lease:
    """Add ``count`` trials (``make_trials``) to ``store`` and reserve the first, ``t0``."""
    await store.add(make_trials(count))
    lease = await store.reserve("w")
    assert lease is not None
    assert lease.trial_id == "t0"
    return lease


def outcome(lease: Lease, status: Status = Status.COMPLETED, **fields: object) -> Outcome:
    """An outcome of the leased attempt."""
    attempt = lease.trial.attempt
    return Outcome.model_validate(
        {"trial_id": lease.trial_id, "attempt": attempt, "status": status, **fields}
    )


@pytest_asyncio.fixture(params=KINDS)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, new_schema: NewSchema
) -> AsyncIterator[MakeStore]:
    """Opens fresh, isolated stores of one kind; closes them after the test."""
    kind: str = request.param
    url = {"postgres": postgres_url, "pgbouncer": pgbouncer_url}.get(kind, str)()
    opened: list[TrialStore] = []

    async def make(max_lost: int = 3) -> TrialStore:  # the contract tests were written for 3
        store: TrialStore
        if kind == "memory":
            store = MemoryStore(max_lost=max_lost)
        elif kind == "sqlite":
            store = SQLiteStore(tmp_path / f"store{len(opened)}.db", max_lost=max_lost)
        else:
            store = await PostgresStore.open(url, schema=new_schema(), max_lost=max_lost)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> TrialStore:
    """A fresh store of each kind."""
    return await make_store()


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def v5_store(
    request: pytest.FixtureRequest, tmp_path: Path, new_schema: NewSchema
) -> AsyncIterator[TrialStore]:
    """A store of schema v5 holding one experiment, ``exp``; opened (so migrated), closed after."""
    async with await v5_store_with("exp", request.param, tmp_path, new_schema) as store:
        yield store
