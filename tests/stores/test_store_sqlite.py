"""What only the SQLite store promises: WAL across processes, busy handling, its schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from async_consumer._errors import StoreError
from async_consumer._models import Lease
from async_consumer.stores import SQLiteStore
from async_consumer.stores import _sqlite_sql as q

from .conftest import make_trials, released_together


async def _add(path: Path, count: int) -> None:
    async with SQLiteStore(path) as store:
        await store.add(make_trials(count))


@pytest.mark.slow
def test_two_processes_never_share_a_trial(tmp_path: Path) -> None:
    """Two worker processes draining one file run every trial exactly once."""
    db = tmp_path / "store.db"
    anyio.run(_add, db, 400)
    assert sorted(released_together(db, "one")) == sorted(t.id for t in make_trials(400))


@pytest.mark.asyncio
async def test_reserve_picks_through_the_pending_index(tmp_path: Path) -> None:
    """The reserve query reads the partial index of pending trials, never the whole table."""
    async with SQLiteStore(tmp_path / "s.db") as store:
        await store.add(make_trials(50))
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE trials SET status = 'completed' WHERE seq < 40")
        for analyzed in (False, True):
            if analyzed:
                conn.execute("ANALYZE")
            plan = " ".join(
                row[3]
                for row in conn.execute(
                    f"EXPLAIN QUERY PLAN {q.RESERVE}",
                    {"worker": "w", "n": 1, "skip": "[]", "hold": 1, "holder": "", "suspects": 0},
                )
            )
            assert "USING INDEX trials_pending" in plan
            assert "TEMP B-TREE" not in plan
    conn.close()


@pytest.mark.asyncio
async def test_busy_database_does_not_block_the_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock, reserve waits by sleeping, then succeeds."""
    path = tmp_path / "s.db"
    leases: list[Lease | None] = []
    async with SQLiteStore(path) as store:
        await store.add(make_trials(1))
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")

            async def reserve() -> None:
                leases.append(await store.reserve("w"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reserve)
                await anyio.wait_all_tasks_blocked()
                assert leases == []
                blocker.execute("COMMIT")
        finally:
            blocker.close()
    assert leases[0] is not None and leases[0].trial_id == "t0"


@pytest.mark.asyncio
async def test_busy_past_busy_wait_is_a_store_error(tmp_path: Path) -> None:
    """A database locked for longer than busy_wait raises StoreError."""
    path = tmp_path / "s.db"
    async with SQLiteStore(path, busy_wait=0.02) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                await store.add(make_trials(1))
        finally:
            blocker.close()


@pytest.mark.asyncio
async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    """Closing and opening the file again keeps the trials and the schema version."""
    path = tmp_path / "deeper" / "s.db"
    async with SQLiteStore(path) as store:
        await store.add(make_trials(2))
    async with SQLiteStore(path) as store:
        assert [t.id for t in await store.list()] == ["t0", "t1"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            q.SCHEMA_VERSION,
        )
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer library version is refused rather than misread."""
    path = tmp_path / "s.db"
    SQLiteStore(path)._conn.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SQLiteStore(path)


def test_unreadable_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database is a StoreError naming it."""
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=r"s\.db"):
        SQLiteStore(path)
