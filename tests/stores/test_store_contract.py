"""The contract every store keeps: adding, reserving, finishing, reading back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from async_consumer._errors import DuplicateTrial, LeaseLost, TrialNotFound
from async_consumer._models import Outcome, Reason, Result, Status, Trial, TrialStatus
from async_consumer.stores import Reservation, TrialStore

from .conftest import first_lease, make_trials, outcome


@pytest.mark.asyncio
async def test_add_counts_and_lists_in_order(store: TrialStore) -> None:
    """Added trials are new, counted, and listed in the order they were added."""
    assert await store.add(make_trials(3)) == 3
    listed = await store.list()
    assert [t.id for t in listed] == ["t0", "t1", "t2"]
    assert all(t.status is TrialStatus.NEW and t.attempts == () for t in listed)
    counts = await store.counts()
    assert counts[TrialStatus.NEW] == 3
    assert set(counts) == set(TrialStatus)


@pytest.mark.asyncio
async def test_empty_store(store: TrialStore) -> None:
    """An empty store counts zero of everything and has nothing to reserve."""
    assert await store.counts() == dict.fromkeys(TrialStatus, 0)
    assert await store.list() == []
    assert await store.reserve("w") is None
    assert await store.add([]) == 0


@pytest.mark.asyncio
async def test_duplicate_adds_nothing(store: TrialStore) -> None:
    """A duplicate id raises DuplicateTrial and none of the batch is added."""
    await store.add(make_trials(1))
    with pytest.raises(DuplicateTrial) as caught:
        await store.add([Trial(id="new"), Trial(id="t0", params={"x": 0})])
    assert caught.value.trial_id == "t0"
    assert [t.id for t in await store.list()] == ["t0"]


@pytest.mark.asyncio
async def test_duplicate_within_one_batch(store: TrialStore) -> None:
    """The same id twice in one batch is a duplicate too, unless exist_ok and equal."""
    with pytest.raises(DuplicateTrial):
        await store.add([Trial(id="a"), Trial(id="a")])
    assert await store.add([Trial(id="a"), Trial(id="a")], exist_ok=True) == 1


@pytest.mark.asyncio
async def test_exist_ok_skips_only_equal_params(store: TrialStore) -> None:
    """With exist_ok an equal trial is skipped; one with other params still raises."""
    await store.add(make_trials(2))
    assert await store.add(make_trials(3), exist_ok=True) == 1
    with pytest.raises(DuplicateTrial):
        await store.add([Trial(id="t0", params={"x": 99})], exist_ok=True)


@pytest.mark.asyncio
async def test_reserve_oldest_first(store: TrialStore) -> None:
    """Reserve hands out trials in insertion order, each with token and attempt 1."""
    await store.add(make_trials(2))
    first, second = await store.reserve("w1", Reservation(host="h1")), await store.reserve("w2")
    assert first is not None and second is not None
    assert (first.trial_id, first.token, first.worker) == ("t0", 1, "w1")
    assert first.trial == Trial(id="t0", params={"x": 0}, attempt=1)
    assert second.trial_id == "t1"
    assert await store.reserve("w3") is None


@pytest.mark.asyncio
async def test_reserve_records_an_attempt(store: TrialStore) -> None:
    """A reservation makes the trial reserved and opens an attempt with worker, host and times."""
    await store.add(make_trials(1))
    before = datetime.now(UTC)
    lease = await store.reserve("w1", Reservation(host="h1"))
    assert lease is not None
    got = await store.get("t0")
    assert (got.status, got.token, got.worker) == (TrialStatus.RESERVED, 1, "w1")
    (attempt,) = got.attempts
    assert (attempt.number, attempt.token, attempt.worker, attempt.host) == (1, 1, "w1", "h1")
    assert attempt.outcome is None
    assert attempt.reserved_at == attempt.heartbeat_at == got.heartbeat_at
    # the store's clock, not ours, but on one host they agree within a generous margin
    assert abs((attempt.reserved_at - before).total_seconds()) < 60


@pytest.mark.asyncio
async def test_heartbeat_moves_forward(store: TrialStore) -> None:
    """A heartbeat with the current token refreshes the trial's and the attempt's beat."""
    lease = await first_lease(store)
    before = (await store.get("t0")).heartbeat_at
    await store.heartbeat(lease)
    got = await store.get("t0")
    assert before is not None and got.heartbeat_at is not None and got.heartbeat_at >= before
    assert got.attempts[0].heartbeat_at == got.heartbeat_at


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(Status.COMPLETED, TrialStatus.COMPLETED, id="completed"),
        pytest.param(Status.BROKEN, TrialStatus.BROKEN, id="broken"),
        pytest.param(Status.INTERRUPTED, TrialStatus.INTERRUPTED, id="interrupted"),
        pytest.param(Status.LOST, TrialStatus.INTERRUPTED, id="lost"),
    ],
)
async def test_finish_sets_status(store: TrialStore, status: Status, expected: TrialStatus) -> None:
    """Finish maps the outcome's status onto the trial and keeps the outcome on the attempt."""
    lease = await first_lease(store)
    done = outcome(lease, status, reason=Reason.EXIT_CODE, returncode=3)
    assert await store.finish(lease, done) is expected
    got = await store.get("t0")
    assert got.status is expected
    assert got.attempts[0].outcome == got.outcome == done
    assert got.lost_count == (1 if status is Status.LOST else 0)


@pytest.mark.asyncio
async def test_interrupted_trial_runs_again_first(store: TrialStore) -> None:
    """An interrupted trial is reserved again before newer ones, as attempt 2 with token 2."""
    lease = await first_lease(store, 2)
    await store.finish(lease, outcome(lease, Status.INTERRUPTED))
    again = await store.reserve("w")
    assert again is not None
    assert (again.trial_id, again.token, again.trial.attempt) == ("t0", 2, 2)
    assert [a.number for a in (await store.get("t0")).attempts] == [1, 2]


@pytest.mark.asyncio
async def test_requeue_keeps_the_outcome_and_runs_again(store: TrialStore) -> None:
    """finish(requeue=True) records a broken attempt as it was and puts the trial back in line."""
    lease = await first_lease(store)
    status = await store.finish(
        lease, outcome(lease, Status.BROKEN, reason=Reason.SIGNAL), requeue=True
    )
    assert status is TrialStatus.INTERRUPTED
    again = await store.reserve("w")
    assert again is not None
    assert again.trial.attempt == 2
    first = (await store.get("t0")).attempts[0].outcome
    assert first is not None
    assert (first.status, first.reason) == (Status.BROKEN, Reason.SIGNAL)


@pytest.mark.asyncio
async def test_finish_twice_is_lease_lost(store: TrialStore) -> None:
    """After finish the lease is spent: a second finish or a heartbeat raises LeaseLost."""
    lease = await first_lease(store)
    await store.finish(lease, outcome(lease))
    with pytest.raises(LeaseLost):
        await store.finish(lease, outcome(lease, Status.BROKEN))
    with pytest.raises(LeaseLost):
        await store.heartbeat(lease)
    assert (await store.get("t0")).status is TrialStatus.COMPLETED


@pytest.mark.asyncio
async def test_finish_rejects_another_trials_outcome(store: TrialStore) -> None:
    """An outcome for another trial than the lease's is a ValueError."""
    lease = await first_lease(store)
    with pytest.raises(ValueError, match="outcome of trial"):
        await store.finish(lease, Outcome(trial_id="other", status=Status.COMPLETED))


@pytest.mark.asyncio
async def test_full_outcome_round_trips(store: TrialStore) -> None:
    """Every field of an outcome comes back unchanged."""
    lease = await first_lease(store)
    done = outcome(
        lease,
        results=(Result(name="loss", type="objective", value=0.25),),
        argv=("python", "train.py", "--lr", "0.1"),
        env={"A": "1"},
        slots={"gpu": ("0", "1")},
        pid=123,
        started_at=datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        ended_at=datetime(2024, 1, 2, 3, 5, tzinfo=UTC),
        cpu_seconds=1.5,
        peak_rss_bytes=10**9,
        stderr_tail="line\n" * 3,
    )
    await store.finish(lease, done)
    assert (await store.get("t0")).outcome == done


@pytest.mark.asyncio
async def test_get_missing_raises_trial_not_found(store: TrialStore) -> None:
    """Getting an unknown id raises TrialNotFound, which is also a KeyError."""
    with pytest.raises(TrialNotFound):
        await store.get("nope")
    with pytest.raises(KeyError):
        await store.get("nope")


@pytest.mark.asyncio
async def test_list_filters_by_status(store: TrialStore) -> None:
    """list(status) returns only the trials in that status, in order."""
    lease = await first_lease(store, 3)
    await store.finish(lease, outcome(lease))
    assert [t.id for t in await store.list(TrialStatus.NEW)] == ["t1", "t2"]
    (done,) = await store.list(TrialStatus.COMPLETED)
    assert done.id == "t0" and done.outcome is not None
    assert await store.list(TrialStatus.BROKEN) == []


@pytest.mark.asyncio
async def test_list_reads_page_by_page(store: TrialStore) -> None:
    """``offset`` and ``limit`` give pages of the list, each trial with its own attempts."""
    lease = await first_lease(store, 5)
    await store.finish(lease, outcome(lease))
    pages = [await store.list(offset=at, limit=2) for at in (0, 2, 4, 6)]
    assert [[t.id for t in page] for page in pages] == [["t0", "t1"], ["t2", "t3"], ["t4"], []]
    assert [len(t.attempts) for t in pages[0]] == [1, 0]
    assert [t.id for t in await store.list(TrialStatus.NEW, offset=1, limit=2)] == ["t2", "t3"]
    assert [t.id for t in await store.list(offset=3)] == ["t3", "t4"]
