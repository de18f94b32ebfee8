"""Clearing a loss when the lease's holder comes back (``clear_losses``), on every store."""

from __future__ import annotations

import pytest

from async_consumer._models import Lease, Reason, Status, TrialStatus
from async_consumer.stores import Reservation, RetryingStore, TrialStore

from .conftest import MakeStore, last_outcome, make_trials, outcome, reserved


async def _reserve(store: TrialStore, worker: str) -> Lease:
    """A lease held from another host, whose holder this store cannot see alive."""
    return await reserved(
        store, worker, Reservation(host="elsewhere", holder=f"elsewhere/{worker}")
    )


async def _charged_twice(make_store: MakeStore) -> tuple[TrialStore, Lease, Lease]:
    """A store whose one trial lost two leases, broken by the second (``max_lost=1``)."""
    store = await make_store(max_lost=1)
    await store.add(make_trials(1))
    first = await _reserve(store, "a")
    await store.reclaim_stale(0.0)
    second = await _reserve(store, "b")
    await store.reclaim_stale(0.0)
    return store, first, second


@pytest.mark.asyncio
async def test_a_holder_that_comes_back_clears_its_loss(store: TrialStore) -> None:
    """A silent holder's stale lease counts a loss; its return clears it, once, truthfully."""
    await store.add(make_trials(1))
    frozen = await _reserve(store, "a")
    assert await store.reclaim_stale(0.0) == ["t0"]
    charged = await store.get("t0")
    assert (charged.status, charged.lost_count) == (TrialStatus.INTERRUPTED, 1)
    assert await store.clear_losses([frozen]) == ["t0"]
    cleared = await store.get("t0")
    assert (cleared.status, cleared.lost_count) == (TrialStatus.INTERRUPTED, 0)
    last = last_outcome(cleared)
    assert (last.status, last.reason) == (Status.INTERRUPTED, Reason.LEASE_LOST)
    assert "frozen or cut off" in last.message
    assert await store.clear_losses([frozen]) == []  # cleared already: nothing changes
    assert (await store.get("t0")).lost_count == 0
    # no longer a suspect: a busy worker takes it
    again = await store.reserve("b", Reservation(suspects=False))
    assert again is not None and again.trial_id == "t0"


@pytest.mark.asyncio
async def test_clearing_never_touches_the_successors_attempt(store: TrialStore) -> None:
    """The holder's own attempt is rewritten; the next holder's lease and attempt stay as they were."""
    await store.add(make_trials(1))
    frozen = await _reserve(store, "a")
    await store.reclaim_stale(0.0)
    successor = await _reserve(store, "b")
    # a lease of the successor's number named with the old holder's worker clears nothing
    forged = frozen.model_copy(update={"token": successor.token})
    assert await store.clear_losses([forged]) == []
    assert await store.clear_losses([successor]) == []  # running: not lost
    assert await store.clear_losses([frozen]) == ["t0"]
    now = await store.get("t0")
    assert (now.status, now.token, now.lost_count) == (TrialStatus.RESERVED, successor.token, 0)
    assert now.attempts[-1].outcome is None
    await store.heartbeat(successor)  # still the successor's lease
    assert await store.finish(successor, outcome(successor)) is TrialStatus.COMPLETED
    done = await store.get("t0")
    assert [a.outcome.status for a in done.attempts if a.outcome] == [
        Status.INTERRUPTED,
        Status.COMPLETED,
    ]


@pytest.mark.asyncio
async def test_a_trial_broken_by_losses_is_interrupted_again(make_store: MakeStore) -> None:
    """A trial whose losses broke it is back in the queue once a loss is cleared below the limit."""
    store, first, second = await _charged_twice(make_store)
    assert (await store.get("t0")).status is TrialStatus.BROKEN
    assert await store.reserve("c") is None
    assert await store.clear_losses([first]) == ["t0"]
    cleared = await store.get("t0")
    assert (cleared.status, cleared.lost_count) == (TrialStatus.INTERRUPTED, 1)
    # the other charge stands until its holder comes back too
    assert [a.outcome.status for a in cleared.attempts if a.outcome] == [
        Status.INTERRUPTED,
        Status.LOST,
    ]
    third = await store.reserve("c")
    assert third is not None and (third.trial_id, third.lost_count) == ("t0", 1)
    assert await store.clear_losses([second]) == ["t0"]
    assert (await store.get("t0")).lost_count == 0


@pytest.mark.asyncio
async def test_clearing_a_loss_keeps_a_trial_broken_by_its_script(make_store: MakeStore) -> None:
    """A trial broken by its script, not by losses, stays broken when an older loss is cleared."""
    store = await make_store(max_lost=1)
    await store.add(make_trials(1))
    frozen = await _reserve(store, "a")
    await store.reclaim_stale(0.0)
    failing = await _reserve(store, "b")
    await store.finish(failing, outcome(failing, Status.BROKEN, reason=Reason.EXIT_CODE))
    assert await store.clear_losses([frozen]) == ["t0"]
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.BROKEN, 0)


@pytest.mark.asyncio
async def test_a_live_local_holders_lease_has_no_loss_to_clear(store: TrialStore) -> None:
    """A stale lease reclaimed from a holder known alive counted no loss: nothing to clear."""
    await store.add(make_trials(1))
    frozen = await _reserve(store, "a")
    await store.reclaim_stale(0.0, alive=["elsewhere/a"])
    assert await store.clear_losses([frozen]) == []
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 0)
    assert await store.clear_losses([]) == []


@pytest.mark.asyncio
async def test_clearing_goes_through_the_retrying_store(store: TrialStore) -> None:
    """The retrying store passes ``clear_losses`` on, as a worker calls it."""
    retrying = RetryingStore(store)
    await retrying.add(make_trials(2))
    frozen = await _reserve(retrying, "a")
    other = await _reserve(retrying, "a")
    await retrying.reclaim_stale(0.0)
    assert sorted(await retrying.clear_losses([frozen, other])) == ["t0", "t1"]
    assert [t.lost_count for t in await retrying.list()] == [0, 0]
