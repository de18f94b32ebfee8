"""Stores as older releases left them: made by the first migrations only, for migration tests."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore
from async_consumer.stores import _postgres_sql as pg
from async_consumer.stores import _sqlite_sql as lite
from async_consumer.stores._sqlite_file import _statements

from ..conftest import NewSchema, postgres_url


def sqlite_of_version(path: Path, version: int) -> None:
    """
    A SQLite store file of schema ``version``, with no rows; version 1 is ``SCHEMA_V1``, the
    first release's SQL as it wrote it.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for number, migration in enumerate(lite.MIGRATIONS[:version], start=1):
            for statement in _statements(migration):  # a trigger's body holds a ';'
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (number,))
    finally:
        conn.close()


@asynccontextmanager
async def postgres_of_version(schema: str, version: int) -> AsyncIterator[Any]:
    """
    A connection to a new PostgreSQL schema of ``version``, with no rows (version 1 is
    ``TABLES_V1``, the first release's SQL); the schema is the caller's to drop.
    """
    import asyncpg

    conn = await asyncpg.connect(postgres_url())
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".schema_version (version integer NOT NULL)')
        for number in range(version):
            await conn.execute(pg.migration(schema, number))
            await conn.execute(f'INSERT INTO "{schema}".schema_version VALUES ($1)', number + 1)
        yield conn
    finally:
        await conn.close()


async def v5_store_with(
    experiment: str, kind: str, tmp_path: Path, new_schema: NewSchema
) -> TrialStore:
    """
    A store of schema v5 (before experiments had a direction or a search) holding one
    experiment, ``python t.py`` at version 1; opened, so migrated, and the caller's to close.
    """
    command = '["python", "t.py"]'
    if kind == "sqlite":
        path = tmp_path / "v5.db"
        sqlite_of_version(path, 5)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO experiments (name, version, command, created_at) VALUES (?, 1, ?, 0)",
                (experiment, command),
            )
        conn.close()
        return SQLiteStore(path)
    schema = new_schema()
    async with postgres_of_version(schema, 5) as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".experiments (name, version, command) VALUES ($1, 1, $2)',
            experiment,
            command,
        )
    return await PostgresStore.open(postgres_url(), schema=schema)
