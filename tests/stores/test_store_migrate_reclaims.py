"""A store of schema v8 (before reclaims were recorded) opens, and judges its suspects' deaths."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_consumer._models import Status, TrialStatus
from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore

from ..conftest import NewSchema, postgres_url
from .old_stores import postgres_of_version, sqlite_of_version

# "s" lost a lease on w1 and runs again on w2: a suspect; "o" runs on w3
TRIALS = [("s", 2, "w2", 1), ("o", 1, "w3", 0)]
LOST = '{"trial_id": "s", "attempt": 1, "status": "lost", "reason": "lease_lost"}'
ATTEMPTS = [("s", 1, "w1", LOST), ("s", 2, "w2", None), ("o", 1, "w3", None)]


async def _check_judged(store: TrialStore) -> None:
    """w3 dies, then the suspect's worker: the suspect's loss is excused."""
    assert await store.reclaim_leases([("o", 1, "h/3/1")], "gone") == ["o"]
    assert await store.reclaim_leases([("s", 2, "h/2/1")], "gone") == ["s"]
    stored = await store.get("s")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 1)
    ended = stored.attempts[-1].outcome
    assert ended is not None and ended.status is Status.INTERRUPTED
    assert "no evidence against the trial" in ended.message


@pytest.mark.asyncio
async def test_a_sqlite_v8_store_judges_its_suspects(tmp_path: Path) -> None:
    """A SQLite store of schema v8 opens; a suspect reserved before dies after another: excused."""
    path = tmp_path / "v8.db"
    sqlite_of_version(path, 8)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO trials (id, trial, status, token, worker, heartbeat_at, lost_count,"
            " holder) VALUES (?, ?, 'reserved', ?, ?, 0, ?, ?)",
            [
                (i, f'{{"id": "{i}", "params": {{}}}}', n, w, lost, f"h/{w[1]}/1")
                for i, n, w, lost in TRIALS
            ],
        )
        conn.executemany(
            "INSERT INTO attempts VALUES (?, ?, ?, ?, 'h', 0, 0, ?)",
            [(i, n, n, w, text) for i, n, w, text in ATTEMPTS],
        )
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_judged(store)


@pytest.mark.asyncio
async def test_a_postgres_v8_store_judges_its_suspects(new_schema: NewSchema) -> None:
    """A PostgreSQL schema of v8 opens; a suspect reserved before dies after another: excused."""
    schema = new_schema()
    async with postgres_of_version(schema, 8) as conn:
        await conn.executemany(
            f"""INSERT INTO "{schema}".trials
            (id, trial, status, token, worker, heartbeat_at, lost_count, holder)
            VALUES ($1, $2, 'reserved', $3, $4, now(), $5, $6)""",
            [
                (i, f'{{"id": "{i}", "params": {{}}}}', n, w, lost, f"h/{w[1]}/1")
                for i, n, w, lost in TRIALS
            ],
        )
        await conn.executemany(
            f"""INSERT INTO "{schema}".attempts VALUES ($1, $2, $2, $3, 'h', now(), now(), $4)""",
            ATTEMPTS,
        )
        async with await PostgresStore.open(postgres_url(), schema=schema) as store:
            await _check_judged(store)
