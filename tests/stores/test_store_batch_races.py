"""Batched reservations racing: two processes on one SQLite file, two pools on one server."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from async_consumer._models import TrialStatus
from async_consumer.stores import Finish, PostgresStore, SQLiteStore, TrialStore

from ..conftest import NewSchema, postgres_url
from .conftest import make_trials, outcome, released_together


async def _drain(store: TrialStore, worker: str) -> list[str]:
    """Reserve, beat and finish seven trials at a time until none is left; the ids reserved."""
    got: list[str] = []
    while leases := await store.reserve_many(worker, 7):
        got += [lease.trial_id for lease in leases]
        assert await store.heartbeat_many(leases) == []
        await store.finish_many([Finish(lease, outcome(lease)) for lease in leases])
    return got


@pytest.mark.slow
def test_two_processes_reserving_many_never_share(tmp_path: Path) -> None:
    """Two processes reserving in batches from one SQLite file run every trial exactly once."""
    db = tmp_path / "store.db"
    anyio.run(_add, SQLiteStore(db), 400)
    assert sorted(released_together(db, "batch")) == sorted(t.id for t in make_trials(400))


async def _add(store: TrialStore, count: int) -> None:
    async with store:
        await store.add(make_trials(count))


@pytest.mark.asyncio
@pytest.mark.slow
async def test_two_postgres_stores_reserving_many_never_share(new_schema: NewSchema) -> None:
    """Two stores (two pools) on one schema, each with three tasks, run every trial once."""
    url, schema = postgres_url(), new_schema()
    stores: list[TrialStore] = []
    try:
        stores += [await PostgresStore.open(url, schema=schema) for _ in range(2)]
        await stores[0].add(make_trials(300))
        got: list[str] = []

        async def drain(store: TrialStore, name: str) -> None:
            got.extend(await _drain(store, name))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(drain, stores[i % 2], f"w{i}")
        assert sorted(got) == sorted(t.id for t in make_trials(300))
    finally:
        for store in stores:
            await store.aclose()


@pytest.mark.asyncio
async def test_a_beat_and_a_group_commit_over_the_same_leases_never_deadlock(
    new_schema: NewSchema,
) -> None:
    """A beat and a finish of the same leases in opposite orders, at once, both go through."""
    url, schema = postgres_url(), new_schema()
    stores: list[TrialStore] = []
    try:
        stores += [await PostgresStore.open(url, schema=schema) for _ in range(2)]
        await stores[0].add(make_trials(400))
        for _ in range(10):
            leases = await stores[0].reserve_many("w", 40)
            items = [Finish(lease, outcome(lease)) for lease in reversed(leases)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(stores[0].heartbeat_many, leases)
                tg.start_soon(stores[1].finish_many, items)
        assert (await stores[0].counts())[TrialStatus.COMPLETED] == 400
    finally:
        for store in stores:
            await store.aclose()
