"""Holding back self-interrupted trials, skipping, reruns, counts by id, experiment records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from async_consumer._experiment import Experiment
from async_consumer._models import Reason, Status, TrialStatus
from async_consumer.stores import Reservation, SQLiteStore, TrialStore

from .conftest import first_lease, make_trials, outcome
from .old_stores import sqlite_of_version

pytestmark = pytest.mark.asyncio


async def test_a_held_trial_waits_and_a_rerun_takes_it_now(store: TrialStore) -> None:
    """``finish(hold=)`` keeps a trial from ``reserve`` until its time; ``hold=False`` ignores it."""
    lease = await first_lease(store)
    interrupted = outcome(lease, Status.INTERRUPTED, reason=Reason.EXIT_CODE)
    assert await store.finish(lease, interrupted, hold=3600) is TrialStatus.INTERRUPTED
    assert await store.reserve("w") is None
    again = await store.reserve("w", Reservation(hold=False))
    assert again is not None and again.trial.attempt == 2
    await store.finish(again, outcome(again, Status.INTERRUPTED), hold=0)
    third = await store.reserve("w")  # not held: taken at once
    assert third is not None and third.trial.attempt == 3


async def test_skip_passes_over_trials(store: TrialStore) -> None:
    """Trials in ``skip`` are passed over, the next one is leased."""
    await store.add(make_trials(3))
    lease = await store.reserve("w", Reservation(skip=["t0", "t1"]))
    assert lease is not None and lease.trial_id == "t2"
    assert await store.reserve("w", Reservation(skip=["t0", "t1"])) is None
    first = await store.reserve("w")
    assert first is not None and first.trial_id == "t0"


async def test_rerun_makes_broken_trials_new_and_keeps_attempts(store: TrialStore) -> None:
    """``rerun`` turns the chosen statuses of the given ids new; attempts stay on record."""
    await store.add(make_trials(3))
    for _ in range(3):
        lease = await store.reserve("w")
        assert lease is not None
        status = Status.COMPLETED if lease.trial_id == "t2" else Status.BROKEN
        await store.finish(lease, outcome(lease, status))
    assert await store.rerun(["t1", "t2", "nope"], {TrialStatus.BROKEN}) == 1
    counts = await store.counts(["t0", "t1", "t2"])
    assert counts[TrialStatus.NEW] == 1 and counts[TrialStatus.BROKEN] == 1
    lease = await store.reserve("w")
    assert lease is not None and lease.trial_id == "t1" and lease.trial.attempt == 2
    await store.finish(lease, outcome(lease))
    stored = await store.get("t1")
    assert [a.outcome and a.outcome.status for a in stored.attempts] == ["broken", "completed"]
    with pytest.raises(ValueError, match="only broken and interrupted"):
        await store.rerun(["t2"], {TrialStatus.COMPLETED})


async def test_counts_of_some_ids(store: TrialStore) -> None:
    """``counts(ids)`` counts those trials only; unknown ids count for nothing."""
    await store.add(make_trials(4))
    counts = await store.counts(["t1", "t3", "missing"])
    assert counts[TrialStatus.NEW] == 2 and sum(counts.values()) == 2
    assert sum((await store.counts([])).values()) == 0


async def test_experiment_versions(store: TrialStore) -> None:
    """The latest version of an experiment comes back as recorded; a version is added once."""
    assert await store.experiment("e") is None
    first = Experiment(name="e", command=("python", "t.py", "{x}"), code_version="abc")
    assert await store.add_experiment(first)
    assert not await store.add_experiment(first)
    second = Experiment(name="e", version=2, command=("python", "t.py", "{x}", "--e", "4"))
    assert await store.add_experiment(second)
    latest = await store.experiment("e")
    assert latest is not None and latest.version == 2 and latest.command == second.command
    assert latest.created_at is not None
    assert (await store.experiment("other")) is None


async def test_a_store_made_by_the_previous_code_opens(tmp_path: Path) -> None:
    """A version-1 SQLite store (the SQL of the previous release) is migrated in place."""
    from async_consumer.stores._sqlite_sql import SCHEMA_VERSION

    path = tmp_path / "old.db"
    sqlite_of_version(path, 1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            """INSERT INTO trials (id, trial, status) VALUES ('old', '{"id": "old", "params": {"x": 1}}', 'interrupted')"""
        )
    conn.close()
    async with SQLiteStore(path) as store:
        lease = await store.reserve("w")
        assert lease is not None and lease.trial_id == "old"
        assert await store.add_experiment(Experiment(name="e", command=("x",)))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
        )
    conn.close()
