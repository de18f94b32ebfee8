"""The fleet in the store: workers register and beat; stores made before the table migrate."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from async_consumer import Status, TrialStatus
from async_consumer._fleet import WorkerInfo, WorkerState
from async_consumer.stores import PostgresStore, SQLiteStore, TrialStore
from async_consumer.stores import _postgres_sql as pg
from async_consumer.stores import _sqlite_sql as lite

from ..conftest import NewSchema, postgres_url
from .conftest import make_trials, outcome
from .old_stores import postgres_of_version, sqlite_of_version


def _worker(name: str = "slurm:41_2", running: int = 1, **fields: object) -> WorkerInfo:
    return WorkerInfo.model_validate(
        {
            "name": name,
            "host": "node7",
            "pid": 123,
            "job_id": "41",
            "task_id": "2",
            "running": running,
            **fields,
        }
    )


@pytest.mark.asyncio
async def test_workers_register_and_beat(store: TrialStore) -> None:
    """A registered worker is listed with its job, task and count; a beat updates count and state."""
    before = datetime.now(UTC) - timedelta(minutes=5)
    await store.record_worker(_worker(), starting=True)
    await store.record_worker(_worker("other", job_id=None, task_id=None), starting=True)
    await store.record_worker(_worker(running=3, state=WorkerState.STOPPING, host="ignored"))
    workers = {w.name: w for w in await store.workers()}
    assert set(workers) == {"slurm:41_2", "other"}
    beaten = workers["slurm:41_2"]
    assert (beaten.host, beaten.pid, beaten.job_id, beaten.task_id) == ("node7", 123, "41", "2")
    assert (beaten.running, beaten.state) == (3, WorkerState.STOPPING)
    assert beaten.started_at is not None and beaten.beat_at is not None
    assert before < beaten.started_at <= beaten.beat_at
    assert workers["other"].job_id is None


@pytest.mark.asyncio
async def test_a_requeued_worker_registers_again(store: TrialStore) -> None:
    """The same name registering again (a requeued job) is running again, not a second row."""
    await store.record_worker(_worker(), starting=True)
    await store.record_worker(_worker(running=0, state=WorkerState.EXITED))
    await store.record_worker(_worker(pid=999, running=0), starting=True)
    (worker,) = await store.workers()
    assert (worker.state, worker.pid) == (WorkerState.RUNNING, 999)


@pytest.mark.asyncio
async def test_sqlite_store_of_version_1_migrates(tmp_path: Path) -> None:
    """A SQLite store made before the workers table opens, keeps its trials and gains the table."""
    path = tmp_path / "old.db"
    sqlite_of_version(path, 1)  # as the code before the ``workers`` table wrote it
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    trial = make_trials(1)[0]
    conn.execute(
        "INSERT INTO trials (id, trial) VALUES (?, ?)",
        (trial.id, trial.model_dump_json(exclude={"attempt"})),
    )
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        await _works_after_migration(store)
    with sqlite3.connect(path) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    conn.close()
    assert versions == [(v,) for v in range(1, lite.SCHEMA_VERSION + 1)]
    async with SQLiteStore(path) as again:  # opening a migrated store changes nothing
        assert len(await again.workers()) == 1


async def _works_after_migration(store: TrialStore) -> None:
    lease = await store.reserve("w")
    assert lease is not None and lease.trial_id == "t0"
    assert await store.finish(lease, outcome(lease, Status.COMPLETED)) is TrialStatus.COMPLETED
    await store.record_worker(_worker(), starting=True)
    assert [w.name for w in await store.workers()] == ["slurm:41_2"]


@pytest.mark.asyncio
async def test_postgres_store_of_version_1_migrates(new_schema: NewSchema) -> None:
    """A PostgreSQL store made before the workers table opens, keeps its trials, gains the table."""
    url, schema = postgres_url(), new_schema()
    async with postgres_of_version(schema, 1) as conn:  # as the code before ``workers`` wrote it
        trial = make_trials(1)[0]
        await conn.execute(
            f'INSERT INTO "{schema}".trials (id, trial) VALUES ($1, $2)',
            trial.id,
            trial.model_dump_json(exclude={"attempt"}),
        )
        async with await PostgresStore.open(url, schema=schema) as store:
            await _works_after_migration(store)
        versions = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
        assert [v[0] for v in versions] == list(range(1, pg.SCHEMA_VERSION + 1))
        async with await PostgresStore.open(url, schema=schema) as again:
            assert len(await again.workers()) == 1
