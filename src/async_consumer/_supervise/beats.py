"""
One heartbeat write per tick for all of a consumer's leases: many trials' beats, coalesced.

Each running trial keeps its own heartbeat task (:meth:`BeatCoalescer.keep`), beside its
script, for as long as the script runs. When the store can renew many leases in one call
(``heartbeat_many``), those tasks do not each wake once an interval: one of them leads, waking
once a tick to renew, in one write, every lease that comes due before the next tick, each still
fenced by its own token; the others sleep until the leader has news for them. A lease the store
reports as no longer ours ends that trial alone (``on_lost``); a failed write counts against
every lease it carried, as a failed single beat would (:class:`.heartbeat.BeatState`), and the
next tick comes a third of an interval later.

There is no background task to start or stop: the first trial's task leads; if the leader's
trial ends (or its lease is lost), it wakes another trial's task, which takes over. The write
itself is shielded and bounded (by what is left of a lease's life, see :func:`coalesced`), so
every lease it carries gets an answer.
At 1,000 running trials and a 0.5 s interval this is two wake-ups a second instead of 2,000.
"""

from __future__ import annotations

import builtins
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio

from .._errors import LeaseLost
from .._models import Lease
from .heartbeat import BeatState, HeartbeatTarget
from .wake import Wake

__all__ = ["BeatCoalescer", "Kept", "ManyHeartbeatTarget", "coalesced"]

_EARLY = 0.001  # seconds: a timer that fires this early (the clock's resolution) is on time


@runtime_checkable
class ManyHeartbeatTarget(HeartbeatTarget, Protocol):
    """A heartbeat target that renews many leases at once: every trial store is one."""

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew each lease still ours; return the ids of those that are not (lost)."""
        ...


@dataclass(eq=False, slots=True)
class Kept:
    """One running trial's lease, how its beats went, and how to wake its task."""

    lease: Lease
    state: BeatState
    wake: Wake = field(default_factory=Wake)
    lost: str | None = None
    ended: bool = False
    """Its trial ended: its task returns (at once, or after the write it is making)."""

    def tell(self) -> None:
        """Wake the trial's task: its lease is lost, or it is to lead, or its trial ended."""
        self.wake.set()

    def end(self) -> None:
        """The trial ended: its task is to return, without a write started for it alone."""
        self.ended = True
        self.tell()

    @property
    def going(self) -> bool:
        """Whether its lease is still to be kept."""
        return self.lost is None and not self.ended


class BeatCoalescer:
    """
    Renews the leases of every trial that keeps one through it, in one write per tick.

    Args:
        target: the store (``heartbeat_many``).
        interval: seconds between two writes, the heartbeat interval.
        timeout: seconds a write may take before every lease it carries counts a failed beat
            (default: an interval: a write of many leases on a busy store takes longer than a
            single beat, and cutting it short would only make the next one as long).
        max_failures: failed beats in a row that lose a lease (unless :meth:`keep` says).
    """

    def __init__(
        self,
        target: ManyHeartbeatTarget,
        interval: float,
        *,
        timeout: float | None = None,
        max_failures: int = 3,
    ) -> None:
        self.target = target
        self.interval = interval
        self.timeout = interval if timeout is None else timeout
        self.max_failures = max_failures
        self.writes = 0
        self.lateness: deque[float] = deque(maxlen=100_000)
        """Seconds from each tick's due time to its write's end."""
        self._kept: dict[Kept, None] = {}  # an ordered set: the next leader is the oldest
        self.on_renewed: Callable[[float | None], None] | None = None
        """Called with the time (``anyio.current_time``) of the oldest renewal of a lease kept
        now, after each write and when the first lease is kept (``None``: none is kept)."""
        self._leader: Kept | None = None
        self._next_tick = -math.inf
        self._reserved: dict[tuple[str, int], float] = {}  # (trial id, token) -> when asked

    async def keep(
        self,
        lease: Lease,
        on_lost: Callable[[str], None],
        *,
        max_failures: int | None = None,
        kept: Kept | None = None,
    ) -> None:
        """
        Keep ``lease`` renewed until cancelled; call ``on_lost`` and return once it is gone.

        The first renewal comes about an interval after the call (the reservation counts as
        a beat), or after ``kept`` was entered (:meth:`enter`, its lease kept since); the lease
        is gone when the store says so, or after the failures that end a single beat loop
        (:class:`.heartbeat.BeatState`).
        """
        await self.hold(kept or self.enter(lease, max_failures=max_failures), on_lost)

    def reserved(self, leases: Sequence[Lease], asked_at: float) -> None:
        """
        Leases whose reservation was asked for at ``asked_at`` (``anyio.current_time``): the
        store's lease began no sooner, so they count as renewed then once entered (:meth:`enter`),
        not later (the reply and the lane's turn may take long on a busy machine, and the
        watchdog must stop a frozen worker's trials before the store's lease runs out).
        """
        stale = asked_at - 10 * self.interval  # never entered (handed back): forgotten
        if self._reserved and min(self._reserved.values()) < stale:
            self._reserved = {key: at for key, at in self._reserved.items() if at >= stale}
        self._reserved.update(((lease.trial_id, lease.token), asked_at) for lease in leases)

    def enter(self, lease: Lease, *, max_failures: int | None = None) -> Kept:
        """Count ``lease`` among those kept, for :meth:`hold` (whose task may start later)."""
        failures = self.max_failures if max_failures is None else max_failures
        since = self._reserved.pop((lease.trial_id, lease.token), None)
        mine = Kept(lease, BeatState(self.interval, failures, lease.trial_id, since))
        self._kept[mine] = None
        if len(self._kept) == 1:
            self.tell_renewed()
        return mine

    def tell_renewed(self) -> None:
        """Call ``on_renewed`` now (the oldest renewal of the leases kept, ``None`` if none)."""
        if self.on_renewed is not None:
            self.on_renewed(min((kept.state.last_ok for kept in self._kept), default=None))

    def drop(self, mine: Kept) -> None:
        """Stop keeping a lease :meth:`enter` counted and no task holds (its trial never ran)."""
        if self._kept.pop(mine, 0) is None and not self._kept:
            self.tell_renewed()

    async def hold(self, mine: Kept, on_lost: Callable[[str], None]) -> None:
        """
        The task of a lease :meth:`enter` counted: it keeps the lease until cancelled or
        ended (:meth:`Kept.end`); it calls ``on_lost`` and returns once the lease is gone.
        """
        try:
            while mine.going:
                if self._leader is None:
                    await self._lead(mine)
                else:
                    await mine.wake  # no frame of its own: ten thousand tasks wait here
        finally:
            del self._kept[mine]
            if not self._kept:
                self.tell_renewed()
            if self._leader is None:
                self._hand_over()
        if mine.lost is not None:
            on_lost(mine.lost)

    def _hand_over(self) -> None:
        """Wake a trial's task to lead the ticks (the leader's trial ended, or lost its lease)."""
        successor = next((kept for kept in self._kept if kept.going), None)
        if successor is not None:
            successor.tell()

    async def _lead(self, mine: Kept) -> None:
        """Tick until this trial's lease is lost or its trial ends (or its task is cancelled)."""
        self._leader = mine
        try:
            while mine.going:
                due = self._next_tick
                # one pass of the loop at least (the trials starting now are counted first), as
                # a sleep would; woken early if its trial ends or its lease is lost
                await mine.wake.wait(max(0.0, due - anyio.current_time()))
                if not mine.going:
                    break
                if anyio.current_time() < due - _EARLY:  # woken early, yet still to lead
                    continue
                now = anyio.current_time()
                batch = [kept for kept in self._kept if kept.state.next_at <= now + self.slack]
                if not batch:
                    self._next_tick = now + self.interval / 2
                    continue
                with anyio.CancelScope(shield=True):
                    await self._write(batch, due if math.isfinite(due) else now)
        finally:
            self._leader = None

    @property
    def slack(self) -> float:
        """How early a lease may be renewed: it is written at the tick nearest its due time."""
        return self.interval / 2

    async def _write(self, batch: list[Kept], due: float) -> None:
        began = anyio.current_time()
        try:
            with anyio.fail_after(self.timeout):
                lost = set(await self.target.heartbeat_many([kept.lease for kept in batch]))
        except Exception as exc:  # noqa: BLE001 - each lease's state decides what a failure means
            for kept in batch:
                self._settle(kept, kept.state.failed(exc))
            self._next_tick = anyio.current_time() + self.interval / 3
        else:
            for kept in batch:
                if kept.lease.trial_id in lost:
                    self._settle(kept, str(LeaseLost(kept.lease.trial_id)))
                else:
                    kept.state.succeeded(began)
            self._next_tick = began + self.interval
            self.tell_renewed()
        self.writes += 1
        self.lateness.append(anyio.current_time() - due)

    def _settle(self, kept: Kept, lost: str | None) -> None:
        if lost is not None:
            kept.lost = lost
            kept.tell()


def coalesced(
    target: HeartbeatTarget | None, interval: float, failures: int = 3
) -> BeatCoalescer | None:
    """
    A coalescer in front of ``target`` when it can renew many leases at once, else ``None``.

    A lease lives ``failures`` intervals from its last renewal, and is renewed again an interval
    later: its write may take the rest, ``failures - 1`` intervals (at least one), before it
    counts as failed. Cutting a slow write shorter only makes the next one as slow: on a store
    loaded by 500 leases beating every 0.2 s beside CPU burners, trials were lost that a
    longer write would have kept.
    """
    if isinstance(target, ManyHeartbeatTarget):
        timeout = interval * max(1, failures - 1)
        return BeatCoalescer(target, interval, timeout=timeout, max_failures=failures)
    return None
