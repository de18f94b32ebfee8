"""A store of schema v5 (before searches) opens migrated: its experiments kept, searches recorded."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from async_consumer._experiment import Experiment
from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore

from . import conftest

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
    from async_consumer.stores import _sqlite_sql as q
    from async_consumer.stores._sqlite_file import _statements

    path = tmp_path / "v5.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for number, migration in enumerate(q.MIGRATIONS[:5], start=1):
            for statement in _statements(migration):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (number,))
        conn.execute(
            "INSERT INTO experiments (name, version, command, config, code_version, created_at) "
            """VALUES ('exp', 1, '["python", "t.py"]', NULL, NULL, 0)"""
        )
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_search_recorded(store)


@pytest.mark.asyncio
async def test_postgres_v5_store_records_searches() -> None:
    """A PostgreSQL schema made by the code before searches opens, migrated, its experiment kept."""
    import asyncpg

    from async_consumer.stores import _postgres_sql as sql

    url = conftest.postgres_url()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".schema_version (version integer NOT NULL)')
        for number in range(5):
            await conn.execute(sql.migration(schema, number))
            await conn.execute(f'INSERT INTO "{schema}".schema_version VALUES ($1)', number + 1)
        await conn.execute(
            f'INSERT INTO "{schema}".experiments (name, version, command) '
            """VALUES ('exp', 1, '["python", "t.py"]')"""
        )
        async with await PostgresStore.open(url, schema=schema) as store:
            await _check_search_recorded(store)
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
