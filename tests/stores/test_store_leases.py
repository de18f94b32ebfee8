"""The contract on leases: fencing, reclaiming by the store's clock, poison trials, races."""

from __future__ import annotations

import anyio
import pytest

from async_consumer._errors import LeaseLost
from async_consumer._models import Reason, Result, Status, Trial, TrialStatus
from async_consumer.stores import TrialStore

from .conftest import MakeStore, make_trials, outcome, reserved

HOSTILE = [
    "'; DROP TABLE trials; --",
    'say "hi"',
    "../../etc/passwd",
    "back\\slash %s ? $1 :name {x}",
    "試験 ✓ émigré \u202e right-to-left",
    "tab\tnew\nline",
    "x" * 2000,
]


@pytest.mark.asyncio
async def test_fencing_keeps_the_rerun(store: TrialStore) -> None:
    """After reclaim and re-reserve, the old lease's beat and result bounce; the re-run's stay."""
    await store.add(make_trials(1))
    old = await reserved(store, "old")
    assert await store.reclaim_stale(0.0) == ["t0"]
    new = await reserved(store, "new")
    assert new.token > old.token
    with pytest.raises(LeaseLost):
        await store.heartbeat(old)
    with pytest.raises(LeaseLost):
        await store.finish(old, outcome(old, Status.BROKEN))
    await store.heartbeat(new)
    assert await store.finish(new, outcome(new)) is TrialStatus.COMPLETED
    with pytest.raises(LeaseLost):
        await store.finish(old, outcome(old))
    got = await store.get("t0")
    assert got.status is TrialStatus.COMPLETED and got.outcome == outcome(new)
    first, second = got.attempts
    assert (first.worker, first.token, second.worker, second.token) == ("old", 1, "new", 2)
    assert first.outcome is not None and first.outcome.status is Status.LOST
    assert first.outcome.reason is Reason.LEASE_LOST and first.outcome.attempt == 1


@pytest.mark.asyncio
async def test_reclaim_only_stale_reserved(store: TrialStore) -> None:
    """reclaim_stale takes only reserved trials whose beat is at least older_than seconds old."""
    await store.add(make_trials(3))
    done = await reserved(store)
    await store.finish(done, outcome(done))
    await reserved(store)
    assert await store.reclaim_stale(3600.0) == []
    assert await store.reclaim_stale(0.0) == ["t1"]
    got = await store.get("t1")
    assert (got.status, got.lost_count) == (TrialStatus.INTERRUPTED, 1)
    assert [t.status for t in await store.list()] == [
        TrialStatus.COMPLETED,
        TrialStatus.INTERRUPTED,
        TrialStatus.NEW,
    ]


@pytest.mark.asyncio
async def test_reclaim_rejects_negative_age(store: TrialStore) -> None:
    """A negative age is a ValueError."""
    with pytest.raises(ValueError, match="older_than"):
        await store.reclaim_stale(-1.0)


@pytest.mark.asyncio
async def test_poison_trial_becomes_broken(make_store: MakeStore) -> None:
    """A trial lost more than max_lost times is broken and no longer handed out."""
    store = await make_store(max_lost=2)
    await store.add(make_trials(1))
    statuses = []
    for _ in range(3):
        await reserved(store)
        await store.reclaim_stale(0.0)
        statuses.append((await store.get("t0")).status)
    assert statuses == [TrialStatus.INTERRUPTED, TrialStatus.INTERRUPTED, TrialStatus.BROKEN]
    assert (await store.get("t0")).lost_count == 3
    assert await store.reserve("w") is None


@pytest.mark.asyncio
async def test_lost_outcome_counts_against_max_lost(make_store: MakeStore) -> None:
    """A worker's own lost outcome counts as a loss; with max_lost 0 the first one breaks it."""
    store = await make_store(max_lost=0)
    await store.add(make_trials(1))
    lease = await reserved(store)
    assert await store.finish(lease, outcome(lease, Status.LOST)) is TrialStatus.BROKEN


@pytest.mark.asyncio
async def test_completion_ignores_earlier_losses(make_store: MakeStore) -> None:
    """A trial lost before completes normally, whatever its lost count."""
    store = await make_store(max_lost=1)
    await store.add(make_trials(1))
    await reserved(store)
    await store.reclaim_stale(0.0)
    lease = await reserved(store)
    assert await store.finish(lease, outcome(lease)) is TrialStatus.COMPLETED


@pytest.mark.asyncio
async def test_concurrent_reserves_never_share(store: TrialStore) -> None:
    """Many tasks reserving at once never get the same trial twice, and every trial is run."""
    await store.add(make_trials(60))
    seen: list[str] = []

    async def worker(name: str) -> None:
        while (lease := await store.reserve(name)) is not None:
            seen.append(lease.trial_id)
            await store.heartbeat(lease)
            await store.finish(lease, outcome(lease))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(worker, f"w{i}")
    assert sorted(seen) == sorted(t.id for t in make_trials(60))
    assert (await store.counts())[TrialStatus.COMPLETED] == 60


@pytest.mark.asyncio
async def test_hostile_text_round_trips(store: TrialStore) -> None:
    """Ids and values with quotes, SQL, paths and unicode are stored and returned unchanged."""
    trials = [
        Trial(id=text, params={text: text, "nested": {"v": [text, 1.5, None, True]}})
        for text in HOSTILE
    ]
    assert await store.add(trials) == len(trials)
    assert [t.trial for t in await store.list()] == trials
    for trial in trials:
        assert (await store.get(trial.id)).trial == trial
        lease = await reserved(store, trial.id)
        assert lease.trial == trial
        done = outcome(
            lease, message=trial.id, results=(Result(name=trial.id, type="objective", value=1.0),)
        )
        await store.finish(lease, done)
        assert (await store.get(trial.id)).outcome == done
    assert (await store.counts())[TrialStatus.COMPLETED] == len(trials)
