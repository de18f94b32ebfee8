"""Coalesced heartbeats: one write per tick for every running trial, each lease still fenced."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest

from async_consumer import Lease, Trial
from async_consumer._errors import StoreUnavailable
from async_consumer._supervise.beats import BeatCoalescer, coalesced

pytestmark = pytest.mark.anyio

HANG = 30  # seconds: only a hang guard, never a bound on how fast anything is


def lease(n: int) -> Lease:
    trial = Trial(id=f"t{n}", params={"n": n})
    return Lease(trial=trial, token=n + 1, worker="w")


class Store:
    """Records each write; answers with the ids in ``lost``, or raises ``errors`` in turn."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.lost: set[str] = set()
        self.errors: list[Exception] = []
        self.single = 0
        self._wrote = anyio.Event()

    async def heartbeat(self, lease: Lease) -> None:
        self.single += 1

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        await anyio.lowlevel.checkpoint()
        self.writes.append([lease.trial_id for lease in leases])
        self._wrote.set()
        if self.errors:
            raise self.errors.pop(0)
        return [lease.trial_id for lease in leases if lease.trial_id in self.lost]

    async def until_writes(self, count: int) -> None:
        """Wait until ``count`` writes have been made."""
        with anyio.fail_after(HANG):
            while len(self.writes) < count:
                await self._wrote.wait()
                self._wrote = anyio.Event()


class Trials:
    """Trials keeping their leases through one coalescer, each in a cancel scope of its own."""

    def __init__(self, beats: BeatCoalescer, tg: anyio.abc.TaskGroup, max_failures: int) -> None:
        self.beats, self.tg, self.max_failures = beats, tg, max_failures
        self.lost: dict[str, str] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.ended = anyio.Event()

    def start(self, lease: Lease) -> None:
        self.scopes[lease.trial_id] = scope = anyio.CancelScope()
        self.tg.start_soon(self._keep, lease, scope)

    async def _keep(self, lease: Lease, scope: anyio.CancelScope) -> None:
        with scope:
            await self.beats.keep(
                lease, max_failures=self.max_failures, on_lost=self._on_lost(lease)
            )

    def _on_lost(self, lease: Lease) -> Callable[[str], None]:
        def on_lost(message: str) -> None:
            self.lost[lease.trial_id] = message
            self.ended.set()

        return on_lost

    def end(self, trial_id: str) -> None:
        self.scopes[trial_id].cancel()


@asynccontextmanager
async def keeping(
    beats: BeatCoalescer, leases: list[Lease], max_failures: int = 3
) -> AsyncIterator[Trials]:
    """Trials keeping these leases until the block ends (then every trial ends)."""
    async with anyio.create_task_group() as tg:
        trials = Trials(beats, tg, max_failures)
        for each in leases:
            trials.start(each)
        yield trials
        tg.cancel_scope.cancel()


async def test_kept_leases_are_one_write_a_tick() -> None:
    """Fifty running trials cost one write a tick, each renewing all fifty, never one a trial."""
    store = Store()
    beats = BeatCoalescer(store, interval=0.05)
    async with keeping(beats, [lease(n) for n in range(50)]) as trials:
        await store.until_writes(3)
    assert [len(write) for write in store.writes[:3]] == [50, 50, 50]
    assert store.single == 0
    assert trials.lost == {}


async def test_a_lease_that_moved_on_is_lost_alone() -> None:
    """The store says one lease is no longer ours: that trial alone is lost, the others renewed."""
    store = Store()
    store.lost = {"t3"}
    async with keeping(BeatCoalescer(store, interval=0.05), [lease(n) for n in range(6)]) as trials:
        await store.until_writes(2)
    assert list(trials.lost) == ["t3"]
    assert "t3" in trials.lost["t3"]
    assert sorted(store.writes[1]) == ["t0", "t1", "t2", "t4", "t5"]


async def test_a_failed_write_counts_for_every_lease_then_the_next_one_renews_them() -> None:
    """An unreachable store fails one write: no trial is lost, and the next write renews all."""
    store = Store()
    store.errors = [StoreUnavailable("the store is down")]
    beats = BeatCoalescer(store, interval=0.3, timeout=0.01)
    async with keeping(beats, [lease(n) for n in range(4)]) as trials:
        await store.until_writes(3)
    assert trials.lost == {}
    assert [len(write) for write in store.writes[:3]] == [4, 4, 4]


async def test_failures_in_a_row_end_every_lease_they_carried() -> None:
    """Each failed write counts once for each lease: after ``max_failures``, each is lost."""
    store = Store()
    store.errors = [RuntimeError("disk I/O error")] * 2
    async with keeping(
        BeatCoalescer(store, interval=0.05), [lease(n) for n in range(3)], 2
    ) as trials:
        with anyio.fail_after(HANG):
            while len(trials.lost) < 3:
                await trials.ended.wait()
                trials.ended = anyio.Event()
    assert len(store.writes) == 2
    assert set(trials.lost.values()) == {
        "2 heartbeats failed in a row, the last RuntimeError('disk I/O error')"
    }


async def test_when_the_leading_trial_ends_another_takes_over() -> None:
    """The trial whose task leads the ticks ends: the others' leases are still renewed."""
    store = Store()
    async with keeping(BeatCoalescer(store, interval=0.05), [lease(n) for n in range(4)]) as trials:
        await store.until_writes(1)
        trials.end("t0")  # the first trial's task leads
        await store.until_writes(3)
    assert trials.lost == {}
    assert sorted(store.writes[-1]) == ["t1", "t2", "t3"]


async def test_only_a_store_that_renews_many_leases_is_coalesced() -> None:
    """A target with ``heartbeat`` alone gets no coalescer: each trial's loop beats it."""

    class Single:
        async def heartbeat(self, lease: Lease) -> None: ...

    assert coalesced(Single(), 1.0) is None
    assert isinstance(coalesced(Store(), 1.0), BeatCoalescer)
    assert coalesced(None, 1.0) is None


async def test_a_write_may_take_what_is_left_of_a_lease() -> None:
    """A lease lives ``failures`` intervals and is renewed after one: a write may take the rest."""
    beats = coalesced(Store(), 0.5, failures=3)
    assert beats is not None
    assert beats.timeout == 1.0
    one = coalesced(Store(), 0.5, failures=1)
    assert one is not None
    assert one.timeout == 0.5


async def test_an_ended_trial_returns_at_once_leading_or_not() -> None:
    """A trial that ends (``end``, not a cancel) returns without waiting for the next tick."""
    store = Store()
    beats = BeatCoalescer(store, interval=3600)  # the next tick: an hour away
    first, second = beats.enter(lease(0)), beats.enter(lease(1))
    lost: list[str] = []
    with anyio.fail_after(HANG):
        async with anyio.create_task_group() as tg:
            tg.start_soon(beats.hold, first, lost.append)  # the first to run leads
            tg.start_soon(beats.hold, second, lost.append)
            while beats._leader is None or not second.wake._waiter:
                await anyio.lowlevel.checkpoint()  # both parked: the leader until its tick
            second.end()  # waiting for the leader: returns at once
            first.end()  # the leader, asleep until the next tick: returns at once too
    assert lost == []
    assert store.writes == []  # no lease was due: ending writes nothing


async def test_an_ended_leader_hands_over_and_the_next_trial_leads() -> None:
    """The leader's trial ends: the next trial's task takes over the ticks at once."""
    store = Store()
    beats = BeatCoalescer(store, interval=0.05)
    kept = [beats.enter(lease(n)) for n in range(3)]
    async with anyio.create_task_group() as tg:
        for each in kept:
            tg.start_soon(beats.hold, each, lambda message: None)
        await store.until_writes(1)
        kept[0].end()  # the leader (a write carrying it may still be under way)
        await store.until_writes(len(store.writes) + 2)
        kept[1].end()
        kept[2].end()
    assert ["t0", "t1", "t2"] in store.writes
    assert store.writes[-1] == ["t1", "t2"]


async def test_a_lease_counts_from_when_its_reservation_was_asked_for() -> None:
    """
    A lease entered long after its reservation was asked for (a slow reply, a busy loop) counts
    as renewed when it was asked for, as the store counts it: the watchdog's deadline is not
    later than the store's.
    """
    beats = coalesced(Store(), 1.0)
    assert beats is not None
    told: list[float | None] = []
    beats.on_renewed = told.append
    asked_at = anyio.current_time() - 2.0  # the reply took two seconds
    beats.reserved([lease(1)], asked_at)
    beats.enter(lease(1))
    assert told == [asked_at]
    beats.enter(lease(2))  # not reserved through the worker: counted from now
    beats.tell_renewed()
    assert told[-1] == asked_at  # the oldest renewal is the first lease's
