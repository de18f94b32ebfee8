"""Lease holders (host/pid/start) and suspects, on every store."""

from __future__ import annotations

import anyio
import pytest

from async_consumer._models import Reason, Status, TrialStatus
from async_consumer.stores import Reservation, TrialStore
from async_consumer.stores._protocol import StaleLook, TimedReclaim
from async_consumer.stores._rules import DEFAULT_MAX_LOST

from .conftest import MakeStore, make_trials, outcome


@pytest.mark.asyncio
async def test_held_leases_name_their_holder(store: TrialStore) -> None:
    """A lease taken with a holder is listed by the holder's host prefix, and only while held."""
    await store.add(make_trials(3))
    mine = await store.reserve("w1", Reservation(host="h", holder="h/100/555"))
    other = await store.reserve("w2", Reservation(host="elsewhere", holder="elsewhere/100/555"))
    anonymous = await store.reserve("w3")
    assert mine is not None and other is not None and anonymous is not None
    assert await store.held_leases("h/") == [("t0", mine.token, "h/100/555")]
    await store.finish(mine, outcome(mine))
    assert await store.held_leases("h/") == []


@pytest.mark.asyncio
async def test_reclaim_leases_is_fenced_and_counts_a_loss(store: TrialStore) -> None:
    """Only the current token is reclaimed; the attempt ends lost with the reason given."""
    await store.add(make_trials(1))
    lease = await store.reserve("w", Reservation(holder="h/1/2"))
    assert lease is not None
    assert await store.reclaim_leases([("t0", lease.token + 1, "h/1/2")], "gone") == []
    assert await store.reclaim_leases([("t0", lease.token, "h/1/2")], "its worker is gone") == [
        "t0"
    ]
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 1)
    last = stored.attempts[-1].outcome
    assert last is not None and (last.status, last.reason) == (Status.LOST, Reason.LEASE_LOST)
    assert last.message == "its worker is gone"


@pytest.mark.asyncio
async def test_a_busy_worker_passes_suspects_over(make_store: MakeStore) -> None:
    """Without suspects, a trial that lost a lease is left for later; with them, it is taken."""
    store = await make_store()
    await store.add(make_trials(2))
    first = await store.reserve("w")
    assert first is not None
    await store.reclaim_stale(0.0)  # t0 lost once: a suspect
    fresh = await store.reserve("w", Reservation(suspects=False))
    assert fresh is not None and (fresh.trial_id, fresh.lost_count) == ("t1", 0)
    assert await store.reserve("w", Reservation(suspects=False)) is None
    suspect = await store.reserve("w")
    assert suspect is not None and (suspect.trial_id, suspect.lost_count) == ("t0", 1)


@pytest.mark.asyncio
async def test_a_trial_is_broken_at_its_third_loss_by_default(make_store: MakeStore) -> None:
    """By default a trial is broken when it loses its third lease (a poison trial, three deaths)."""
    store = await make_store(max_lost=DEFAULT_MAX_LOST)
    await store.add(make_trials(1))
    for _ in range(3):
        lease = await store.reserve("w")
        assert lease is not None
        await store.reclaim_leases([("t0", lease.token, "")], "gone")
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.BROKEN, 3)
    assert await store.reserve("w") is None


@pytest.mark.asyncio
async def test_a_stale_lease_of_a_live_holder_counts_no_loss(store: TrialStore) -> None:
    """A stale lease whose holder still runs is interrupted without a loss; a silent one counts."""
    await store.add(make_trials(2))
    frozen = await store.reserve("w1", Reservation(holder="h/100/555"))
    dead = await store.reserve("w2", Reservation(holder="h/200/555"))
    assert frozen is not None and dead is not None
    reclaimed = await store.reclaim_stale(0.0, alive=["h/100/555"])
    assert sorted(reclaimed) == ["t0", "t1"]
    alive, silent = await store.get("t0"), await store.get("t1")
    assert (alive.status, alive.lost_count) == (TrialStatus.INTERRUPTED, 0)
    last = alive.attempts[-1].outcome
    assert last is not None and (last.status, last.reason) == (
        Status.INTERRUPTED,
        Reason.LEASE_LOST,
    )
    assert "still ran" in last.message
    assert (silent.status, silent.lost_count) == (TrialStatus.INTERRUPTED, 1)
    last = silent.attempts[-1].outcome
    assert last is not None and last.status is Status.LOST
    # the trial is no suspect: a worker that runs other trials reserves it
    again = await store.reserve("w3", Reservation(holder="h/300/555", suspects=False))
    assert again is not None and again.trial_id == "t0"


@pytest.mark.asyncio
async def test_unreserve_gives_the_attempt_number_back(store: TrialStore) -> None:
    """A reservation undone leaves no attempt; the next one has the same number; fenced."""
    await store.add(make_trials(1))
    first = await store.reserve("w", Reservation(holder="h/1/2"))
    assert first is not None
    assert await store.unreserve(first) is True
    assert await store.unreserve(first) is False  # no longer reserved: nothing changes
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count, stored.attempts) == (TrialStatus.NEW, 0, ())
    again = await store.reserve("w", Reservation(holder="h/1/2"))
    assert again is not None and again.trial.attempt == first.trial.attempt == 1
    await store.finish(again, outcome(again, Status.BROKEN))
    third = await store.reserve("w")
    assert third is None  # broken: not pending
    stored = await store.get("t0")
    assert [a.number for a in stored.attempts] == [1]


@pytest.mark.asyncio
async def test_a_running_holders_stale_lease_is_kept_until_wedged(store: TrialStore) -> None:
    """
    A stale lease whose holder is known to run (``running``) is left to it, while a stale
    lease of another holder is reclaimed; only once ``wedged`` seconds old is it taken too
    (the holder is wedged), counting no loss when the holder is also ``alive``.
    """
    await store.add(make_trials(2))
    slow = await store.reserve("w1", Reservation(holder="h/100/555"))
    stopped = await store.reserve("w2", Reservation(holder="h/200/555"))
    assert slow is not None and stopped is not None
    await anyio.sleep(1.0)  # the time the leases need to be 1 s stale, not an ordering
    alive, running = ["h/100/555", "h/200/555"], ["h/100/555"]
    assert await store.reclaim_stale(0.5, alive=alive, running=running) == ["t1"]
    assert await store.reclaim_stale(0.5, alive=alive, running=running, wedged=60.0) == []
    assert (await store.get("t0")).status is TrialStatus.RESERVED
    assert await store.reclaim_stale(0.5, alive=alive, running=running, wedged=0.5) == ["t0"]
    wedged = await store.get("t0")
    assert (wedged.status, wedged.lost_count) == (TrialStatus.INTERRUPTED, 0)


@pytest.mark.asyncio
async def test_a_timed_reclaim_says_when_the_next_lease_falls_stale(store: TrialStore) -> None:
    """
    ``reclaim_stale_timed`` reclaims as ``reclaim_stale`` does and says in how many seconds the
    oldest lease it left falls stale: neither the spared holder's nor a running holder's count.
    """
    assert isinstance(store, TimedReclaim)
    await store.add(make_trials(3))
    for holder in ("h/1/1", "h/2/2", "h/3/3"):
        assert await store.reserve("w", Reservation(holder=holder)) is not None
    look = await store.reclaim_stale_timed(60.0, spare="h/3/3", running=["h/2/2"])
    assert look.reclaimed == [] and look.next_in is not None and 50.0 < look.next_in <= 60.0
    look = await store.reclaim_stale_timed(60.0, spare="h/1/1", running=["h/2/2", "h/3/3"])
    assert look == StaleLook([], None)
    look = await store.reclaim_stale_timed(0.0, spare="h/3/3", running=["h/2/2"], wedged=0.0)
    assert sorted(look.reclaimed) == ["t0", "t1"] and look.next_in is None
