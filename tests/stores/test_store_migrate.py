"""A store written by the previous release (schema v1) opens in this one, migrated in place."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from async_consumer._models import TrialStatus
from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore

from . import conftest

SQLITE_V1_ROWS = """
INSERT INTO trials (id, trial, status, token, worker, heartbeat_at)
VALUES ('old', '{"id": "old", "params": {"x": 1}}', 'reserved', 1, 'w', 0),
       ('new', '{"id": "new", "params": {"x": 2}}', 'new', 0, NULL, NULL);
INSERT INTO attempts VALUES ('old', 1, 1, 'w', 'h', 0, 0, NULL);
INSERT INTO schema_version VALUES (1)
"""


async def _check_migrated(store: TrialStore) -> None:
    """The old rows are all there, without a holder; the new columns work."""
    assert [t.id for t in await store.list()] == ["old", "new"]
    assert await store.held_leases("") == []  # v1 leases have no holder: never judged gone
    lease = await store.reserve("w2", host="h", holder="h/1/2")
    assert lease is not None and lease.trial_id == "new"
    assert await store.held_leases("h/") == [("new", 1, "h/1/2")]
    assert (await store.get("old")).status is TrialStatus.RESERVED


@pytest.mark.asyncio
async def test_sqlite_v1_store_is_migrated(tmp_path: Path) -> None:
    """A SQLite file made with the v1 SQL opens, is migrated, and keeps every row."""
    from async_consumer.stores import _sqlite_sql as q

    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in filter(str.strip, (q.SCHEMA_V1 + ";" + SQLITE_V1_ROWS).split(";")):
            conn.execute(statement)
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_migrated(store)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            q.SCHEMA_VERSION,
        )
    conn.close()


@pytest.mark.asyncio
async def test_postgres_v1_store_is_migrated() -> None:
    """A PostgreSQL schema made with the v1 SQL opens, is migrated, and keeps every row."""
    import asyncpg

    from async_consumer.stores import _postgres_sql as sql

    url = conftest.postgres_url()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(sql.TABLES_V1.format(s=f'"{schema}"'))
        await conn.execute(f'CREATE TABLE "{schema}".schema_version (version integer NOT NULL)')
        await conn.execute(f"""
            INSERT INTO "{schema}".trials (id, trial, status, token, worker, heartbeat_at)
            VALUES ('old', '{{"id": "old", "params": {{}}}}', 'reserved', 1, 'w', now()),
                   ('new', '{{"id": "new", "params": {{}}}}', 'new', 0, NULL, NULL);
            INSERT INTO "{schema}".attempts VALUES ('old', 1, 1, 'w', 'h', now(), now(), NULL);
            INSERT INTO "{schema}".schema_version VALUES (1)""")  # fmt: skip
        async with await PostgresStore.open(url, schema=schema) as store:
            await _check_migrated(store)
        assert (
            await conn.fetchval(f'SELECT max(version) FROM "{schema}".schema_version')
            == sql.SCHEMA_VERSION
        )
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
