"""A suspect is charged for its worker's death only on evidence, on every store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from async_consumer._models import Lease, Reason, Status, TrialStatus
from async_consumer.stores import Reservation, TrialStore
from async_consumer.stores._rules import DEFAULT_MAX_LOST

from .conftest import MakeStore, last_outcome, make_trials, reserved

SUSPECT = "h/w2/1"
"""The holder of the suspect's lease in these tests: stale reclaims of others spare it."""


async def taken(store: TrialStore, trial_id: str, worker: str) -> Lease:
    """``trial_id``, reserved by ``worker`` (holder ``h/<worker>/1``); the test fails otherwise."""
    others = {"t0", "t1"} - {trial_id}
    request = Reservation(host="h", holder=f"h/{worker}/1", skip=others)
    lease = await reserved(store, worker, request)
    assert lease.trial_id == trial_id
    return lease


async def dies(store: TrialStore, lease: Lease) -> None:
    """The lease's worker is gone: the store takes the lease back."""
    holder = f"h/{lease.worker}/1"
    assert await store.reclaim_leases([(lease.trial_id, lease.token, holder)], "gone") == [
        lease.trial_id
    ]


async def goes_silent(store: TrialStore, lease: Lease) -> None:
    """The lease's worker stops beating (dead, or cut off): the store reclaims it as stale."""
    assert await store.reclaim_stale(0.0, spare=SUSPECT) == [lease.trial_id]


async def freezes(store: TrialStore, lease: Lease) -> None:
    """The lease's worker still runs but stops beating: the store reclaims it, no loss."""
    alive = [f"h/{lease.worker}/1"]
    assert await store.reclaim_stale(0.0, spare=SUSPECT, alive=alive) == [lease.trial_id]


Ending = Callable[[TrialStore, Lease], Awaitable[None]]


async def a_suspect(store: TrialStore) -> Lease:
    """Trials t0 and t1; t0 lost once (on worker w1), then taken again by w2: a suspect
    (held by ``SUSPECT``)."""
    await store.add(make_trials(2))
    await dies(store, await taken(store, "t0", "w1"))
    suspect = await taken(store, "t0", "w2")
    assert suspect.lost_count == 1
    return suspect


async def clock_moves_on(store: TrialStore) -> None:
    """Wait until the store's clock is past every event so far (it may count milliseconds)."""
    await store.add(make_trials(1, prefix="clock"), exist_ok=True)
    beat = await store.reserve("clock", Reservation(skip={"t0", "t1"}))
    assert beat is not None and beat.trial_id == "clock0"
    first = (await store.get("clock0")).attempts[-1].heartbeat_at
    later = first
    while later == first:  # the store's own time, read back: no sleep orders these events
        await store.heartbeat(beat)
        later = (await store.get("clock0")).attempts[-1].heartbeat_at
    await store.unreserve(beat)


@pytest.mark.asyncio
async def test_a_suspects_lone_death_is_charged(make_store: MakeStore) -> None:
    """A suspect whose worker dies while no other worker does is charged: broken at its third."""
    store = await make_store(max_lost=DEFAULT_MAX_LOST)
    suspect = await a_suspect(store)
    await dies(store, suspect)
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 2)
    assert last_outcome(stored).status is Status.LOST
    await goes_silent(store, await taken(store, "t0", "w3"))
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.BROKEN, 3)
    assert [a.outcome.status for a in stored.attempts if a.outcome] == [Status.LOST] * 3


@pytest.mark.asyncio
@pytest.mark.parametrize("other_ends", [dies, goes_silent, freezes], ids=lambda f: f.__name__)
async def test_a_suspects_death_among_others_is_excused(
    store: TrialStore, other_ends: Ending
) -> None:
    """
    A suspect whose worker dies after another worker (one that never ran it) lost a lease is
    not charged: the attempt is interrupted and says why, the trial stays a suspect.
    """
    suspect = await a_suspect(store)
    await other_ends(store, await taken(store, "t1", "w3"))
    await dies(store, suspect)
    stored = await store.get("t0")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 1)
    ended = last_outcome(stored)
    assert (ended.status, ended.reason) == (Status.INTERRUPTED, Reason.LEASE_LOST)
    assert ended.message.startswith("gone; other workers lost leases too")
    assert "no evidence against the trial, no loss counted" in ended.message
    # still a suspect: a worker running other trials passes it over
    assert await store.reserve("w4", Reservation(skip={"t1"}, suspects=False)) is None


@pytest.mark.asyncio
async def test_deaths_in_one_reclaim_excuse_a_suspect(store: TrialStore) -> None:
    """Two silent workers reclaimed at once: the suspect's loss is excused, the other's counts."""
    await a_suspect(store)
    await taken(store, "t1", "w3")
    assert sorted(await store.reclaim_stale(0.0)) == ["t0", "t1"]
    stored, other = await store.get("t0"), await store.get("t1")
    assert (stored.status, stored.lost_count) == (TrialStatus.INTERRUPTED, 1)
    assert last_outcome(stored).status is Status.INTERRUPTED
    assert last_outcome(stored).message.startswith("no heartbeat for 0 s or more; the store")
    assert "no evidence against the trial" in last_outcome(stored).message
    # a trial that was no suspect is charged its first loss all the same: now it is one
    assert (other.status, other.lost_count) == (TrialStatus.INTERRUPTED, 1)
    assert last_outcome(other).status is Status.LOST


@pytest.mark.asyncio
async def test_deaths_before_its_previous_attempt_do_not_excuse(store: TrialStore) -> None:
    """A death before the suspect's previous attempt began is no excuse for its next death."""
    await store.add(make_trials(2))
    await dies(store, await taken(store, "t1", "w3"))
    await clock_moves_on(store)
    # t0's previous attempt (on w1) begins after w3's death, and ends as t0's first loss
    await dies(store, await taken(store, "t0", "w1"))
    await dies(store, await taken(store, "t0", "w2"))
    stored = await store.get("t0")
    assert (stored.lost_count, last_outcome(stored).status) == (2, Status.LOST)


@pytest.mark.asyncio
async def test_a_poison_trials_own_deaths_do_not_excuse_it(store: TrialStore) -> None:
    """The trials that died beside a suspect on its earlier workers are no excuse for it."""
    await store.add(make_trials(2))
    first = await taken(store, "t0", "w1")
    beside = await taken(store, "t1", "w1")  # its neighbour on w1, dead with it
    holder = "h/w1/1"
    held = [("t0", first.token, holder), ("t1", beside.token, holder)]
    assert sorted(await store.reclaim_leases(held, "gone")) == ["t0", "t1"]
    await dies(store, await taken(store, "t0", "w2"))
    stored = await store.get("t0")
    assert (stored.lost_count, last_outcome(stored).status) == (2, Status.LOST)


@pytest.mark.asyncio
async def test_a_death_during_its_previous_attempt_excuses(store: TrialStore) -> None:
    """A suspect whose previous attempt saw another worker die is excused its next death."""
    await store.add(make_trials(2))
    first = await taken(store, "t0", "w1")
    await dies(store, await taken(store, "t1", "w3"))  # while t0's first attempt runs
    await dies(store, first)
    await dies(store, await taken(store, "t0", "w2"))
    stored = await store.get("t0")
    assert (stored.lost_count, last_outcome(stored).status) == (1, Status.INTERRUPTED)
