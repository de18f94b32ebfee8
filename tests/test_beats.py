"""Coalesced heartbeats: one write per tick for every running trial, each lease still fenced."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import anyio
import pytest

from async_consumer import Lease, LeaseLost, Trial
from async_consumer._errors import StoreUnavailable
from async_consumer._supervise.beats import BeatCoalescer, coalesced

pytestmark = pytest.mark.anyio


def lease(n: int) -> Lease:
    trial = Trial(id=f"t{n}", params={"n": n})
    return Lease(trial=trial, token=n + 1, worker="w")


class Store:
    """Records each write; answers with the ids in ``lost``, or raises ``error``."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.lost: set[str] = set()
        self.error: Exception | None = None
        self.single = 0

    async def heartbeat(self, lease: Lease) -> None:
        self.single += 1

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        await anyio.lowlevel.checkpoint()
        self.writes.append([lease.trial_id for lease in leases])
        if self.error is not None:
            raise self.error
        return [lease.trial_id for lease in leases if lease.trial_id in self.lost]


async def beat_all(beats: BeatCoalescer, leases: list[Lease]) -> dict[str, BaseException | None]:
    """Beat every lease at once; what each beat got (``None``: renewed)."""
    answers: dict[str, BaseException | None] = {}

    async def one(lease: Lease) -> None:
        try:
            await beats.heartbeat(lease)
        except Exception as exc:  # noqa: BLE001 - the answer is the test's subject
            answers[lease.trial_id] = exc
        else:
            answers[lease.trial_id] = None

    async with anyio.create_task_group() as tg:
        for each in leases:
            tg.start_soon(one, each)
    return answers


async def test_beats_that_come_together_are_one_write() -> None:
    """Fifty trials beating at once cost one write, then one write a tick, never one a trial."""
    store = Store()
    beats = BeatCoalescer(store, interval=0.05)
    leases = [lease(n) for n in range(50)]
    for _ in range(3):
        answers = await beat_all(beats, leases)
        assert set(answers.values()) == {None}
    assert [len(write) for write in store.writes] == [50, 50, 50]
    assert store.single == 0
    assert beats.writes == 3


async def test_a_lease_that_moved_on_is_lost_alone() -> None:
    """The store says one lease is no longer ours: that trial alone gets LeaseLost."""
    store = Store()
    store.lost = {"t3"}
    answers = await beat_all(BeatCoalescer(store, interval=0.05), [lease(n) for n in range(6)])
    assert isinstance(answers.pop("t3"), LeaseLost)
    assert set(answers.values()) == {None}
    assert len(store.writes) == 1


async def test_a_failed_write_fails_every_beat_it_carried_then_the_next_one_renews_them() -> None:
    """An unreachable store fails each beat of the write (each loop retries), then recovers."""
    store = Store()
    store.error = StoreUnavailable("the store is down")
    beats = BeatCoalescer(store, interval=0.3, timeout=0.01)
    answers = await beat_all(beats, [lease(n) for n in range(4)])
    assert all(isinstance(answer, StoreUnavailable) for answer in answers.values())
    store.error = None
    with anyio.fail_after(30):  # the next tick comes a third of an interval after the failure
        answers = await beat_all(beats, [lease(n) for n in range(4)])
    assert set(answers.values()) == {None}
    assert len(store.writes) == 2


async def test_when_the_leading_trial_ends_another_beat_takes_over() -> None:
    """The trial whose beat waits for the tick ends meanwhile: the others still get written."""
    store = Store()
    beats = BeatCoalescer(store, interval=0.2)
    await beat_all(beats, [lease(0)])  # the next tick is an interval away
    answers: dict[str, BaseException | None] = {}
    async with anyio.create_task_group() as tg:
        leader = anyio.CancelScope()

        async def lead() -> None:
            with leader:
                await beats.heartbeat(lease(0))

        async def follow(n: int) -> None:
            await beats.heartbeat(lease(n))
            answers[f"t{n}"] = None

        tg.start_soon(lead)
        await anyio.wait_all_tasks_blocked()
        for n in (1, 2, 3):
            tg.start_soon(follow, n)
        await anyio.wait_all_tasks_blocked()
        leader.cancel()
    assert answers == {"t1": None, "t2": None, "t3": None}
    assert sorted(store.writes[-1]) == ["t1", "t2", "t3"]


async def test_only_a_store_that_renews_many_leases_is_coalesced() -> None:
    """A target with ``heartbeat`` alone is used as it is."""

    class Single:
        async def heartbeat(self, lease: Lease) -> None: ...

    single = Single()
    assert coalesced(single, 1.0) is single
    assert isinstance(coalesced(Store(), 1.0), BeatCoalescer)
    assert coalesced(None, 1.0) is None
