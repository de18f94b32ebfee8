"""
One heartbeat write per tick for all of a consumer's leases: many trials' beats, coalesced.

Each running trial keeps its own beat loop (:func:`.heartbeat.beat`). When the store can renew
many leases in one call (``heartbeat_many``), the loops beat through a :class:`BeatCoalescer`,
which sends at most one write per ``interval``: the beats that come due meanwhile wait for the
next tick, and its write renews every one of them, each still fenced by its own token. A lease
the store reports as no longer ours raises ``LeaseLost`` for that trial only. A failed write
fails every beat it carried (each loop counts and retries it as it would a single beat), and the
next tick comes a third of an interval later.

There is no background task to start or stop: the first beat of a tick leads it (waits for the
tick, writes, hands each beat its answer); if the leader's trial ends while it waits, a beat
still waiting takes over. The write itself is shielded and bounded, so every beat it carries
gets an answer.
"""

from __future__ import annotations

import builtins
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio

from .._errors import LeaseLost
from .._models import Lease
from .heartbeat import HeartbeatTarget

__all__ = ["BeatCoalescer", "ManyHeartbeatTarget", "coalesced"]


@runtime_checkable
class ManyHeartbeatTarget(HeartbeatTarget, Protocol):
    """A heartbeat target that renews many leases at once: every trial store is one."""

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew each lease still ours; return the ids of those that are not (lost)."""
        ...


@dataclass(slots=True)
class _Beat:
    lease: Lease
    asked_at: float = field(default_factory=anyio.current_time)
    done: bool = False
    error: Exception | None = None


class BeatCoalescer:
    """
    Renews the leases of every trial that beats through it, in one write per tick.

    Args:
        target: the store (``heartbeat_many``).
        interval: seconds between two writes, the heartbeat interval.
        timeout: seconds a write may take before every beat it carries fails (default: an
            interval: a write of many leases on a busy store takes longer than a single beat,
            and cutting it short would only make the next one as long).
    """

    def __init__(
        self, target: ManyHeartbeatTarget, interval: float, *, timeout: float | None = None
    ) -> None:
        self.target, self.interval = target, interval
        self.timeout = interval if timeout is None else timeout
        self.writes = 0
        self.lateness: deque[float] = deque(maxlen=100_000)
        """Seconds from each tick's due time (or its first beat, if later) to its write's end."""
        self._pending: dict[tuple[str, int], _Beat] = {}
        self._leading = False
        self._answered = anyio.Event()  # set when a tick has ended or its leader left
        self._next_tick = -math.inf

    @property
    def max_wait(self) -> float:
        """The longest a beat can take: the wait for a tick, then the write."""
        return self.interval + self.timeout

    async def heartbeat(self, lease: Lease) -> None:
        """Renew the lease at the next tick; raise ``LeaseLost`` if the store says it is gone."""
        key = (lease.trial_id, lease.token)
        mine = self._pending[key] = _Beat(lease)
        try:
            while not mine.done:
                if self._leading:
                    await self._answered.wait()
                else:
                    await self._lead()
        finally:
            if self._pending.get(key) is mine:
                del self._pending[key]
        if mine.error is not None:
            raise mine.error.with_traceback(None)

    async def _lead(self) -> None:
        """Wait for the tick, then write every beat then pending and answer each."""
        self._leading = True
        try:
            due = self._next_tick
            await anyio.sleep(max(0.0, due - anyio.current_time()))
            batch = list(self._pending.values())
            self._pending.clear()
            with anyio.CancelScope(shield=True):
                await self._write(batch, due)
        finally:
            self._leading = False
            answered, self._answered = self._answered, anyio.Event()
            answered.set()

    async def _write(self, batch: list[_Beat], due: float) -> None:
        began = anyio.current_time()
        try:
            with anyio.fail_after(self.timeout):
                lost = set(await self.target.heartbeat_many([beat.lease for beat in batch]))
        except Exception as exc:  # noqa: BLE001 - each beat's loop decides what a failure means
            for beat in batch:
                beat.error = exc
            self._next_tick = anyio.current_time() + self.interval / 3
        else:
            for beat in batch:
                if beat.lease.trial_id in lost:
                    beat.error = LeaseLost(beat.lease.trial_id)
            self._next_tick = began + self.interval
        for beat in batch:
            beat.done = True
        self.writes += 1
        first = min(beat.asked_at for beat in batch)
        self.lateness.append(anyio.current_time() - max(due, first))


def coalesced(target: HeartbeatTarget | None, interval: float) -> HeartbeatTarget | None:
    """``target`` behind a coalescer when it can renew many leases at once, else as it is."""
    if isinstance(target, ManyHeartbeatTarget):
        return BeatCoalescer(target, interval)
    return target
