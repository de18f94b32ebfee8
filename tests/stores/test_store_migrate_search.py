"""A store of schema v5 (before searches) opens migrated: its experiments kept, searches recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_consumer._experiment import Experiment
from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore

from ..conftest import NewSchema, postgres_url
from .old_stores import postgres_of_version, sqlite_of_version

SEARCH = '{"n": 5, "sampler": "random", "space": {"x": "uniform(0, 1)"}}'


async def _check_search_recorded(store: TrialStore) -> None:
    """The v5 experiment is there with no search; a new version records its search."""
    old = await store.experiment("exp")
    assert old is not None and old.command == ("python", "t.py") and old.search is None
    assert await store.add_experiment(
        Experiment(name="exp", version=2, command=("t",), search=SEARCH)
    )
    new = await store.experiment("exp")
    assert new is not None and new.version == 2 and new.search == SEARCH


@pytest.mark.asyncio
async def test_sqlite_v5_store_records_searches(tmp_path: Path) -> None:
    """A SQLite file made by the code before searches opens, migrated, its experiment kept."""
    path = tmp_path / "v5.db"
    sqlite_of_version(path, 5)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO experiments (name, version, command, config, code_version, created_at) "
            """VALUES ('exp', 1, '["python", "t.py"]', NULL, NULL, 0)"""
        )
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_search_recorded(store)


@pytest.mark.asyncio
async def test_postgres_v5_store_records_searches(new_schema: NewSchema) -> None:
    """A PostgreSQL schema made by the code before searches opens, migrated, its experiment kept."""
    schema = new_schema()
    async with postgres_of_version(schema, 5) as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".experiments (name, version, command) '
            """VALUES ('exp', 1, '["python", "t.py"]')"""
        )
    async with await PostgresStore.open(postgres_url(), schema=schema) as store:
        await _check_search_recorded(store)
