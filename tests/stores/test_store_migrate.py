"""A store written by the previous release (schema v1) opens in this one, migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_consumer._models import Outcome, TrialStatus
from async_consumer._ranking import best_trial
from async_consumer.stores import PostgresStore, Reservation, SQLiteStore, TrialStore

from ..conftest import NewSchema, postgres_url
from .old_stores import postgres_of_version, sqlite_of_version

SQLITE_V1_ROWS = """
INSERT INTO trials (id, trial, status, token, worker, heartbeat_at)
VALUES ('old', '{"id": "old", "params": {"x": 1}}', 'reserved', 1, 'w', 0),
       ('new', '{"id": "new", "params": {"x": 2}}', 'new', 0, NULL, NULL);
INSERT INTO attempts VALUES ('old', 1, 1, 'w', 'h', 0, 0, NULL);
"""


async def _check_migrated(store: TrialStore) -> None:
    """The old rows are all there, without a holder; the new columns work."""
    assert [t.id for t in await store.list()] == ["old", "new"]
    assert await store.held_leases("") == []  # v1 leases have no holder: never judged gone
    lease = await store.reserve("w2", Reservation(host="h", holder="h/1/2"))
    assert lease is not None and lease.trial_id == "new"
    assert await store.held_leases("h/") == [("new", 1, "h/1/2")]
    assert (await store.get("old")).status is TrialStatus.RESERVED


@pytest.mark.asyncio
async def test_sqlite_v1_store_is_migrated(tmp_path: Path) -> None:
    """A SQLite file made with the v1 SQL opens, is migrated, and keeps every row."""
    from async_consumer.stores import _sqlite_sql as q

    path = tmp_path / "v1.db"
    sqlite_of_version(path, 1)
    with sqlite3.connect(path) as conn:
        conn.executescript(SQLITE_V1_ROWS)
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_migrated(store)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            q.SCHEMA_VERSION,
        )
    conn.close()


@pytest.mark.asyncio
async def test_postgres_v1_store_is_migrated(new_schema: NewSchema) -> None:
    """A PostgreSQL schema made with the v1 SQL opens, is migrated, and keeps every row."""
    from async_consumer.stores import _postgres_sql as sql

    schema = new_schema()
    async with postgres_of_version(schema, 1) as conn:
        await conn.execute(f"""
            INSERT INTO "{schema}".trials (id, trial, status, token, worker, heartbeat_at)
            VALUES ('old', '{{"id": "old", "params": {{}}}}', 'reserved', 1, 'w', now()),
                   ('new', '{{"id": "new", "params": {{}}}}', 'new', 0, NULL, NULL);
            INSERT INTO "{schema}".attempts VALUES ('old', 1, 1, 'w', 'h', now(), now(), NULL)""")
        async with await PostgresStore.open(postgres_url(), schema=schema) as store:
            await _check_migrated(store)
        assert (
            await conn.fetchval(f'SELECT max(version) FROM "{schema}".schema_version')
            == sql.SCHEMA_VERSION
        )


def _v4_rows() -> tuple[list[tuple[str, str, int]], list[tuple[str, int, str | None]]]:
    """
    Trials (id, status, token) and finished attempts (trial id, number, outcome JSON) as the
    code before schema v5 left them: an objective only inside each attempt's outcome.
    """

    def done(trial_id: str, number: int, *values: float, status: str = "completed") -> str:
        results = [{"name": "acc", "type": "statistic", "value": 0.0}]  # not an objective
        results += [{"name": "loss", "type": "objective", "value": v} for v in values]
        # a NUL from the script's stderr, escaped in the JSON (PostgreSQL's json refuses it)
        fields = {"attempt": number, "status": status, "stderr_tail": "warn\x00binary"}
        return Outcome.model_validate(
            {"trial_id": trial_id, **fields, "results": results}
        ).model_dump_json()

    trials = [("a", "completed", 2), ("b", "completed", 1), ("c", "interrupted", 1)]
    trials += [("d", "completed", 1), ("e", "completed", 1), ("f", "completed", 1)]
    trials += [("g", "reserved", 1)]  # finished after the upgrade, by a worker of the old code
    attempts: list[tuple[str, int, str | None]] = [("a", 1, done("a", 1, 0.5))]
    attempts += [("a", 2, done("a", 2, 4.0))]  # the latest counts
    # c: its completed attempt was put back in the queue (``requeue``): not a completed trial
    attempts += [("b", 1, done("b", 1, 2.0)), ("c", 1, done("c", 1, 0.1))]
    attempts += [("d", 1, done("d", 1, 1e20, 0.0)), ("e", 1, done("e", 1, 2.0))]
    attempts += [("f", 1, done("f", 1)), ("g", 1, None)]  # f: completed without an objective
    return trials, attempts


V4_FINISH = (
    "UPDATE {s}trials SET status = 'completed' WHERE id = 'g'",
    "UPDATE {s}attempts SET outcome = {v} WHERE trial_id = 'g' AND number = 1",
)
"""What a worker of the code before schema v5 writes when it finishes a trial (its objective
only in the outcome): ``{s}`` the schema's prefix, ``{v}`` the outcome's parameter."""


def _late_outcome() -> str:
    """The outcome of g, the lowest objective of all."""
    results = [{"name": "loss", "type": "objective", "value": -1.0}]
    return Outcome(trial_id="g", status="completed", results=results).model_dump_json()


async def _check_ranked(store: TrialStore) -> None:
    """Each completed trial of the old store is ranked by its latest attempt's objective."""
    everything = await store.list(TrialStatus.COMPLETED)
    low, high = await store.best(), await store.best(maximize=True)
    assert low is not None and low.id == "b"  # 2.0, added before e's equal 2.0
    assert high is not None and high.id == "d"  # 1e20 (its first objective)
    assert low == best_trial(everything) and high == best_trial(everything, maximize=True)


async def _check_late_finish(store: TrialStore) -> None:
    """g, finished by the old code's statements after the upgrade, is ranked too."""
    low = await store.best()
    assert low is not None and low.id == "g"
    assert low == best_trial(await store.list(TrialStatus.COMPLETED))


@pytest.mark.asyncio
async def test_sqlite_v4_store_ranks_its_completed_trials(tmp_path: Path) -> None:
    """A SQLite store of schema v4 gets each completed trial's objective from its outcomes."""
    path = tmp_path / "v4.db"
    trials, attempts = _v4_rows()
    sqlite_of_version(path, 4)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO trials (id, trial, status, token) VALUES (?, ?, ?, ?)",
            [(i, f'{{"id": "{i}", "params": {{}}}}', status, n) for i, status, n in trials],
        )
        conn.executemany(
            "INSERT INTO attempts VALUES (?, ?, ?, 'w', 'h', 0, 0, ?)",
            [(i, n, n, text) for i, n, text in attempts],
        )
    conn.close()
    async with SQLiteStore(path) as store:
        await _check_ranked(store)
        with sqlite3.connect(path) as conn:  # the old code's finish, after the upgrade
            conn.execute(V4_FINISH[0].format(s="", v=""))
            conn.execute(V4_FINISH[1].format(s="", v="?"), (_late_outcome(),))
        conn.close()
        await _check_late_finish(store)


@pytest.mark.asyncio
async def test_postgres_v4_store_ranks_its_completed_trials(new_schema: NewSchema) -> None:
    """A PostgreSQL schema of v4 gets each completed trial's objective from its outcomes."""
    schema = new_schema()
    trials, attempts = _v4_rows()
    async with postgres_of_version(schema, 4) as conn:
        await conn.executemany(
            f'INSERT INTO "{schema}".trials (id, trial, status, token) VALUES ($1, $2, $3, $4)',
            [(i, f'{{"id": "{i}", "params": {{}}}}', status, n) for i, status, n in trials],
        )
        await conn.executemany(
            f"""INSERT INTO "{schema}".attempts VALUES ($1, $2, $2, 'w', 'h', now(), now(), $3)""",
            attempts,
        )
        async with await PostgresStore.open(postgres_url(), schema=schema) as store:
            await _check_ranked(store)
            await conn.execute(V4_FINISH[0].format(s=f'"{schema}".', v=""))
            await conn.execute(V4_FINISH[1].format(s=f'"{schema}".', v="$1"), _late_outcome())
            await _check_late_finish(store)


@pytest.mark.asyncio
async def test_a_v5_store_gets_experiment_directions(v5_store: TrialStore) -> None:
    """A store of schema v5 opens; its experiments minimise, new ones keep --maximize."""
    from async_consumer._experiment import Experiment

    old = await v5_store.experiment("exp")
    assert old is not None and old.command == ("python", "t.py") and old.maximize is False
    assert await v5_store.add_experiment(
        Experiment(name="exp", version=2, command=("python", "t.py"), maximize=True)
    )
    new = await v5_store.experiment("exp")
    assert new is not None and (new.version, new.maximize) == (2, True)
    fixed = Experiment(name="exp", version=2, command=("python", "u.py"), maximize=True)
    assert not await v5_store.add_experiment(fixed)  # there already: kept as it was
    assert await v5_store.add_experiment(fixed, replace=True)
    assert await v5_store.experiment("exp") == fixed.model_copy(
        update={"created_at": new.created_at}
    )
