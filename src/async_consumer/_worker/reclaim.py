"""
Handing dead workers' trials back to the queue: at once for a dead process on this host, after
``lost_after`` silent heartbeats for anyone else.

Any live worker does this on a timer, so a dead worker's trials are re-run even when no one
happens to be reserving at that moment. A lease whose holder is a process of this host that is
gone (its pid no longer runs, or runs a process started at another time) is reclaimed at the
first look, not after three heartbeats: a rerun of a killed ``run`` resumes at once. A stale
lease whose holder is a process of this host that is stopped (SIGSTOP, a debugger) is
reclaimed after ``lost_after`` heartbeats like any other, but counts no loss against its trial:
the worker, not the trial, stopped; any worker may run it again at once, even a busy one. One
whose holder is a process of this host that runs and is not stopped is left to it: it is
alive, only late to beat (a loaded machine), and it ends its own trial if it learns that the
lease is lost; reclaiming it would start the trial a second time beside the first, adding load
to a machine already too slow to beat. Only a holder that has beaten nothing for ten leases,
and at least a minute (:data:`WEDGED_LEASES`, :data:`WEDGED_SECONDS`), is taken to be wedged
and reclaimed from here. Workers of other hosts, which cannot see that it runs, reclaim it after
``lost_after`` heartbeats as before. A silent holder of another host costs its trial a loss,
which it has cleared if it comes back (:mod:`.alive`).

The reclaimer looks once an interval, and sooner when the store says (as it reclaims) that the
oldest lease it may take falls stale before then: a dead worker's trials are taken when their
leases fall stale, not up to an interval later. In a fleet whose leases are renewed every
interval no lease is that close to stale, so the looks stay one an interval per worker.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from .._supervise.holder import is_gone, is_running
from ..stores._protocol import HeldLease
from ..stores._retrying import RetryingStore

__all__ = ["Reclaimer"]

logger = logging.getLogger("async_consumer")

WEDGED_LEASES = 10
"""Leases without a beat after which a holder of this host that runs (not stopped) is wedged."""
WEDGED_SECONDS = 60.0
"""The least time without a beat after which it is wedged: a loaded machine's stalls are
seconds, whatever the interval (event loops woke up to 30 s late at load 20-25 a core, with a
1 s heartbeat)."""


@dataclass(eq=False)
class Reclaimer:
    """
    Reclaims stale leases, and dead local holders' leases, every ``interval`` seconds.

    Args:
        store: the worker's store, wrapped to wait out outages (its outage state is read).
        host: this host's name, as lease holders carry it.
        interval: seconds between two looks (the heartbeat interval).
        lost_after: a lease is stale after this many intervals without a beat.
        known: the leases (trial id, token) the worker holds now, as it knows them.
        spare: the worker's own holder (``host/pid/start``): its leases are never reclaimed
            here, they are its own beat loops' business (a lease of its own that went stale is
            ended as lost by the trial's beat loop, which knows whether the trial still runs).
        on_reclaimed: called when stale leases were reclaimed (the worker's idle lanes look
            at once, not at their next poll).
    """

    store: RetryingStore
    host: str
    interval: float
    lost_after: float
    spare: str = ""
    known: Callable[[], Collection[tuple[str, int]]] = frozenset
    on_reclaimed: Callable[[], None] | None = None
    _unknown: set[tuple[str, int]] = field(default_factory=set, init=False)
    """Our own leases (trial id, token) we did not know of, at the last look."""

    async def run_forever(self) -> None:
        """
        Look now, then every interval or when the next lease falls stale if sooner, until
        cancelled (a store error is raised).
        """
        while True:
            held = await self.store.held_leases(f"{self.host}/")
            gone = self._gone(held)
            await self.reclaim_dead(held, gone)
            await self.reclaim_orphans(held)
            pause = self.interval
            if not self._is_just_back():
                alive = [holder for holder, is_dead in gone.items() if not is_dead]
                pause = self._pause(await self.reclaim_stale(alive, self._running(alive)))
            await anyio.sleep(pause)

    def _pause(self, next_in: float | None) -> float:
        """
        Seconds to the next look: an interval, or just after the next lease falls stale (a
        twentieth of an interval at least, spread by up to a tenth so that a fleet's workers do
        not all look at the same moment; the first one's look takes the lease).
        """
        if next_in is None or next_in >= self.interval:
            return self.interval
        spread = random.uniform(0.0, self.interval / 10)
        return min(self.interval, max(next_in, 0.0) + self.interval / 20 + spread)

    async def reclaim_dead(
        self, held: Sequence[HeldLease], gone: Mapping[str, bool] | None = None
    ) -> list[str]:
        """
        Reclaim the leases (of those ``held`` on this host) whose process is gone.

        ``gone`` tells whether each of their holders is, if that is already known.
        """
        if gone is None:
            gone = self._gone(held)
        dead = [(trial_id, token, holder) for trial_id, token, holder in held if gone[holder]]
        if not dead:
            return []
        pids = sorted({holder.split("/")[-2] for _, _, holder in dead})
        message = f"its worker on this host (pid {', '.join(pids)}) is gone"
        return await self._reclaim(dead, message)

    def _gone(self, held: Sequence[HeldLease]) -> dict[str, bool]:
        """Whether the process of each holder of ``held`` (leases of this host) is gone."""
        return {holder: is_gone(holder, self.host) for holder in {h for _, _, h in held}}

    def _running(self, alive: Collection[str]) -> list[str]:
        """Which of ``alive`` (holders of this host not gone) run, not stopped; not ours."""
        return [
            holder for holder in alive if holder != self.spare and is_running(holder, self.host)
        ]

    async def reclaim_orphans(self, held: Sequence[HeldLease]) -> list[str]:
        """
        Reclaim our own leases that no lane holds, seen twice an interval apart.

        A reservation can commit and its reply be lost (the connection cut at that moment); the
        worker retried and holds another trial, and the orphan would wait for ever, as our own
        leases are spared from ``reclaim_stale``. Twice: a reservation under way is not one.
        """
        if not self.spare:
            return []
        known = set(self.known())
        mine = {(i, token): (i, token, h) for i, token, h in held if h == self.spare}
        unknown = {key for key in mine if key not in known}
        orphans = [mine[key] for key in unknown & self._unknown]
        self._unknown = unknown
        if not orphans:
            return []
        return await self._reclaim(orphans, "reserved by this worker, but the reply was lost")

    async def _reclaim(self, leases: Sequence[HeldLease], message: str) -> list[str]:
        reclaimed = await self.store.reclaim_leases(leases, message)
        for trial_id in reclaimed:
            logger.warning("reclaimed: %s", message, extra={"trial_id": trial_id})
        return reclaimed

    async def reclaim_stale(
        self, alive: Collection[str] = (), running: Collection[str] = ()
    ) -> float | None:
        """
        Reclaim the leases whose last heartbeat is ``lost_after`` intervals old; return the
        seconds until the next lease falls stale, if the store says.

        Those held by ``alive`` holders (processes of this host that still exist: frozen or
        overloaded) count no loss against their trials; those held by ``running`` holders
        (processes of this host that run, not stopped) are reclaimed only once wedged.
        """
        older_than = self.lost_after * self.interval
        wedged = max(older_than * WEDGED_LEASES, WEDGED_SECONDS)
        reclaimed, next_in = await self.store.reclaim_stale_timed(
            older_than, spare=self.spare, alive=alive, running=running, wedged=wedged
        )
        for trial_id in reclaimed:
            logger.warning(
                "reclaimed from a worker that stopped beating", extra={"trial_id": trial_id}
            )
        if reclaimed and self.on_reclaimed is not None:
            self.on_reclaimed()
        return next_in

    def _is_just_back(self) -> bool:
        """
        Whether the store came back from an outage less than a lease ago.

        The other workers were most likely cut off too: their beats need a lease's time to get
        through again before their trials may be called stale.
        """
        back_at = self.store.outage.back_at
        lease = self.store.lease_seconds or 0.0
        return back_at is not None and anyio.current_time() - back_at < lease
