"""Intermediate values in the store: recorded in batches, read on from a cursor, first one kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_consumer import Trial
from async_consumer._experiment import Experiment
from async_consumer.stores import IntermediateValue, PostgresStore, SQLiteStore, TrialStore
from async_consumer.stores._retrying import RetryingStore

from ..conftest import NewSchema, postgres_url
from .old_stores import postgres_of_version, sqlite_of_version

V = IntermediateValue


@pytest.mark.asyncio
async def test_values_are_read_on_from_a_cursor(store: TrialStore) -> None:
    """Each value is read once, in the order recorded, page by page; a step recorded twice keeps its first value."""
    assert await store.read_values() == ([], 0)
    await store.record_values([V("a", 0, 1.0), V("b", 0, 5.0), V("a", 1, 0.5)])
    await store.record_values([])
    first, cursor = await store.read_values(limit=2)
    assert first == [V("a", 0, 1.0), V("b", 0, 5.0)]
    await store.record_values([V("a", 1, 9.0), V("b", 1, 4.0), V("b", 1, 8.0)])
    rest, cursor = await store.read_values(cursor)
    assert rest == [V("a", 1, 0.5), V("b", 1, 4.0)]
    assert await store.read_values(cursor) == ([], cursor)


@pytest.mark.asyncio
async def test_a_retrying_store_passes_values_through(store: TrialStore) -> None:
    """The worker's retrying store records and reads values as the store does."""
    retrying = RetryingStore(store)
    await retrying.record_values([V("a", 3, 0.25)])
    assert (await retrying.read_values())[0] == [V("a", 3, 0.25)]


@pytest.mark.asyncio
async def test_a_stale_holders_values_are_dropped(store: TrialStore) -> None:
    """
    Values fenced by a token are kept only while the trial is reserved under it: a lease
    reclaimed and taken again, the first holder's late values are dropped, the new holder's kept.
    """
    await store.add([Trial(id="t", params={})])
    first = await store.reserve("w1")
    assert first is not None
    await store.record_values([V("t", 0, 1.0)], tokens={"t": first.token})
    assert await store.reclaim_stale(0.0) == ["t"]
    await store.record_values([V("t", 1, 9.0)], tokens={"t": first.token})  # reclaimed
    second = await store.reserve("w2")
    assert second is not None and second.token != first.token
    await store.record_values([V("t", 2, 9.0)], tokens={"t": first.token})  # another's now
    await store.record_values(
        [V("t", 1, 0.5), V("t", 2, 0.5), V("u", 0, 3.0)], tokens={"t": second.token}
    )
    values, _ = await store.read_values()
    assert values == [V("t", 0, 1.0), V("t", 1, 0.5), V("t", 2, 0.5), V("u", 0, 3.0)]


SEARCH = '{"n": 5, "sampler": "random", "pruner": "median", "space": {"x": "uniform(0, 1)"}}'


async def _check_v7_migrated(store: TrialStore) -> None:
    """The v7 search is kept, its trial too; values are recorded and read."""
    recorded = await store.experiment("exp")
    assert recorded is not None and recorded.search == SEARCH
    assert [t.id for t in await store.list()] == ["exp-1"]
    await store.record_values([V("exp-1", 0, 0.5)])
    assert await store.read_values() == ([V("exp-1", 0, 0.5)], 1)


@pytest.mark.asyncio
async def test_a_v7_sqlite_store_records_values(tmp_path: Path) -> None:
    """A SQLite store made by the code before values (v7) opens migrated, its search kept."""
    path = tmp_path / "v7.db"
    sqlite_of_version(path, 7)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO experiments (name, version, command, created_at, search) "
            "VALUES ('exp', 1, '[\"t\"]', 0, ?)",
            (SEARCH,),
        )
        conn.execute("INSERT INTO trials (id, trial) VALUES ('exp-1', '{\"id\": \"exp-1\"}')")
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_v7_migrated(store)


@pytest.mark.asyncio
async def test_a_v7_postgres_store_records_values(new_schema: NewSchema) -> None:
    """A PostgreSQL schema made by the code before values (v7) opens migrated, its search kept."""
    schema = new_schema()
    async with postgres_of_version(schema, 7) as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".experiments (name, version, command, search) '
            "VALUES ('exp', 1, '[\"t\"]', $1)",
            SEARCH,
        )
        await conn.execute(
            f'INSERT INTO "{schema}".trials (id, trial) VALUES (\'exp-1\', \'{{"id": "exp-1"}}\')'
        )
    async with await PostgresStore.open(postgres_url(), schema=schema) as store:
        await _check_v7_migrated(store)
        assert await store.add_experiment(Experiment(name="exp", version=2, command=("t",)))
