"""
Which trial a worker leases next, and when: suspects run alone, a failing disk pauses the lanes.

A *suspect* is a trial that lost a lease before: its worker may have died of it. Only a worker
with nothing else running reserves one, and it reserves nothing more while the suspect runs, so
that if the suspect kills this worker no healthy trial is lost with it, and the death is charged
to the suspect alone. A host that cannot create trials' files gives each trial back and pauses
every lane (0.5 s, doubling), and gives up after ``max_file_faults`` failures in a row.

Lanes with nothing to reserve do not each poll the store: one of them does (see :meth:`idle`).
"""

from __future__ import annotations

import errno
import logging
import os
import random
from collections import deque
from collections.abc import Callable, Collection
from typing import Self

import anyio

from .._consumer import Consumer
from .._errors import TrialFilesError
from .._models import Lease, Outcome, Reason, TrialStatus
from ..stores import TrialStore
from ..stores._retrying import Outage, RetryingStore

__all__ = ["Lane", "Leasing", "link_store"]

logger = logging.getLogger("async_consumer")


class Leasing:
    """
    Reserves trials for a worker's lanes and gives back those this host could not start.

    Args:
        store: the worker's store (its link).
        name: the worker's name; ``host``: its host; ``holder``: its ``host/pid/start``.
        max_file_faults: failures in a row to create trials' files before giving up.
        file_fault_backoff: seconds of the first pause after such a failure (then doubled).
    """

    empty_for = 0.2
    """Seconds the lanes take a store that had no trial for them as still empty."""

    def __init__(
        self,
        store: TrialStore,
        name: str,
        host: str,
        holder: str,
        max_file_faults: int = 5,
        file_fault_backoff: float = 0.5,
    ) -> None:
        self.store, self.name, self.host, self.holder = store, name, host, holder
        self.max_file_faults = max_file_faults
        self.file_fault_backoff = file_fault_backoff
        self._alone: anyio.Event | None = None  # set when the suspect running alone has ended
        self._reserving = anyio.Lock()
        self._asking = 0  # lanes asking for a lease now
        self._ready: deque[Lease] = deque()  # reserved for a lane that has not taken it yet
        self.holding: dict[tuple[str, int], Lease] = {}
        """The leases reserved and not yet done, by (trial id, token)."""
        self.by_id: dict[str, Lease] = {}
        """The same, by trial id (the newest lease of a trial reserved again meanwhile)."""
        self._empty_until = 0.0  # no lane asks the store again before (it had nothing)
        self._counting = anyio.Lock()
        self._counted: tuple[float, dict[TrialStatus, int]] | None = None  # (taken at, counts)
        self._file_faults = 0  # in a row
        self._paused_until = 0.0  # no lane reserves before (a pause after a file fault)
        self._poller: Lane | None = None  # the idle lane that polls for the others
        self._polled = anyio.Event()  # set when the poller stops idling: the others look again
        self._nudged = anyio.Event()  # set to make the poller look at once

    async def reserve(
        self,
        skip: Collection[str] = (),
        hold: bool = True,
        stop: Callable[[], bool] = bool,
        lane: Lane | None = None,
    ) -> Lease | None:
        """
        A lease on the next trial this worker may run now (``None``: nothing for it now).

        ``skip`` and ``hold`` are passed on to the store; ``stop()`` true (the worker halted
        while the lane waited for its turn): nothing. Lanes asking together are served by
        one reservation: the first reserves for every lane then waiting (not a suspect: a
        suspect is reserved alone, by an idle worker). ``lane`` (from :meth:`lane`), given a
        lease, stops idling (:meth:`busy`).
        """
        await anyio.sleep(max(0.0, self._paused_until - anyio.current_time()))
        if anyio.current_time() < self._empty_until:
            return None  # the store had nothing a moment ago: a thousand idle lanes ask once
        self._asking += 1
        try:
            async with self._reserving:
                while self._alone is not None:
                    await self._alone.wait()
                if stop():  # each reservation is an attempt: none for a lane that will not run it
                    return None
                if not self._ready:
                    await self._reserve_for(self._asking, skip, hold)
                if not self._ready:
                    self._empty_until = anyio.current_time() + self.empty_for
                    return None
                self.busy(lane)
                return self._ready.popleft()
        finally:
            self._asking -= 1

    async def idle(self, lane: Lane, poll: float) -> None:
        """
        Wait before ``lane``, which found nothing to reserve, looks again.

        One idle lane, the poller, looks every ``poll`` seconds (at once after a :meth:`nudge`);
        the others wait until it stops idling (:meth:`busy`: it got a trial, or left because the
        store was drained or the worker halted), then look again together (one reservation, one
        count for them all). Ten thousand idle lanes thus cost the store and the event loop what
        one lane costs.
        """
        if self._poller is None or self._poller is lane:
            self._poller = lane
            with anyio.move_on_after(poll):
                await self._nudged.wait()
        else:
            await self._polled.wait()

    def nudge(self) -> None:
        """The idle lanes look again now, not at the next poll (a lane found the store drained)."""
        self._nudged.set()
        self._nudged = anyio.Event()

    def lane(self) -> Lane:
        """A lane's token for :meth:`idle` and :meth:`busy` (with it, the lane stops idling)."""
        return Lane(self)

    def busy(self, lane: Lane | None) -> None:
        """``lane`` stops idling (it got a trial, or leaves): if it polled, the others look again."""
        if lane is not None and self._poller is lane:
            self._poller = None
            self._polled.set()
            self._polled = anyio.Event()

    async def _reserve_for(self, lanes: int, skip: Collection[str], hold: bool) -> None:
        """Reserve for ``lanes`` lanes into ``_ready`` (just one when idle: it may be a suspect)."""
        store, name, host, holder = self.store, self.name, self.host, self.holder
        if not self.holding:
            lease = await store.reserve(name, host=host, skip=skip, hold=hold, holder=holder)
            leases = [] if lease is None else [lease]
        else:
            leases = await store.reserve_many(
                name, lanes, host=host, skip=skip, hold=hold, holder=holder, suspects=False
            )
        self.holding.update(((lease.trial_id, lease.token), lease) for lease in leases)
        self.by_id.update((lease.trial_id, lease) for lease in leases)
        if leases and leases[0].lost_count:
            self._alone = anyio.Event()
        self._ready.extend(leases)

    async def release(self) -> None:
        """Hand back the leases reserved for lanes that stopped before taking them."""
        while self._ready:
            lease = self._ready.popleft()
            await self.hand_back(lease, "its worker stopped before starting it")
            self.done(lease)

    def done(self, lease: Lease) -> None:
        """The lease's attempt has ended (recorded or not): another may be reserved."""
        self.holding.pop((lease.trial_id, lease.token), None)
        if self.by_id.get(lease.trial_id) is lease:
            del self.by_id[lease.trial_id]
        if lease.lost_count and self._alone is not None:
            self._alone.set()
            self._alone = None

    async def hand_back(self, lease: Lease, why: str) -> None:
        """Give back a trial whose attempt never started, its attempt number with it (unused)."""
        with anyio.CancelScope(shield=True):
            await self.store.unreserve(lease)
        logger.info("given back, not started: %s", why, extra={"trial_id": lease.trial_id})

    async def give_back(self, lease: Lease, exc: TrialFilesError) -> None:
        """
        Hand back a trial this host could not start, without counting a loss; pause the lanes.

        Raises:
            TrialFilesError: ``max_file_faults`` failures in a row.
        """
        self._file_faults += 1
        with anyio.CancelScope(shield=True):
            await self.store.unreserve(lease)
        self._pause(lease, exc, "trial given back")

    def ran(self, lease: Lease, outcome: Outcome) -> None:
        """
        A trial ran (its outcome recorded): the disk is fine again, unless it failed for want of
        space (``disk_full``): then the lanes pause, as after a failure to create trials' files.

        Raises:
            TrialFilesError: ``max_file_faults`` such faults in a row.
        """
        if outcome.reason is not Reason.DISK_FULL:
            self._file_faults = 0
            return
        self._file_faults += 1
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._pause(lease, TrialFilesError(outcome.working_dir, full), "the trial failed")

    def _pause(self, lease: Lease, exc: TrialFilesError, what: str) -> None:
        if self._file_faults >= self.max_file_faults:
            raise exc
        delay = min(30.0, self.file_fault_backoff * 2.0 ** (self._file_faults - 1))
        delay *= random.uniform(0.75, 1.25)
        self._paused_until = max(self._paused_until, anyio.current_time() + delay)
        extra, counts = {"trial_id": lease.trial_id}, (self._file_faults, self.max_file_faults)
        logger.warning("%s; %s, pausing %.1f s (%d/%d)", exc, what, delay, *counts, extra=extra)

    async def may_leave(self, interrupted: Collection[str] = ()) -> bool:
        """
        Whether a lane that found nothing to reserve may leave: none of this worker's trials
        is running (they may come back to the queue) and the store is drained; then the idle
        lanes look too, at once (one count for them all, not one a lane as each trial ends).
        """
        if self.holding or not await self.is_drained(interrupted):
            return False
        self.nudge()
        return True

    async def is_drained(self, interrupted: Collection[str] = ()) -> bool:
        """
        Whether no trial is left for this lane (``interrupted``: those the worker will not start).

        The trials this worker runs itself are not waiting for the lane: the lane whose trial
        comes back to the queue (a retry) is still there to run it again.
        """
        counts = await self._counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        left = sum(counts.get(status, 0) for status in waiting) - len(self.holding)
        if interrupted and left > 0:
            # the trials this worker will not start again are not waiting for it
            mine = await self.store.counts(interrupted)
            left -= mine[TrialStatus.INTERRUPTED]
        return left <= 0

    async def _counts(self) -> dict[TrialStatus, int]:
        """
        The store's counts, taken at most ``empty_for`` seconds before this call began: lanes
        asking together share one query. Safe for :meth:`is_drained`: a trial this worker has
        since reserved counts as waiting and is held, one it ended still counts as waiting (a
        lane idles, never leaves too soon); other processes' changes are seen ``empty_for``
        seconds late, as :meth:`reserve` sees them after the store had nothing.
        """
        oldest = anyio.current_time() - self.empty_for  # counts taken since will do
        async with self._counting:
            if self._counted is not None and self._counted[0] >= oldest:
                return self._counted[1]
            began = anyio.current_time()
            counts = await self.store.counts()
            self._counted = (began, counts)
            return counts


class Lane:
    """A lane of a worker, to its leasing; leaving its ``with`` block, it stops idling."""

    __slots__ = ("_leasing",)  # ten thousand lanes: no dict each

    def __init__(self, leasing: Leasing) -> None:
        self._leasing = leasing

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._leasing.busy(self)


def link_store(
    store: TrialStore, consumer: Consumer, limit: float, lost_after: float
) -> RetryingStore:
    """
    The store behind a link that waits out outages.

    When the consumer's heartbeats go through the same link, it knows when each lease was last
    renewed, so a finish is retried for as long as its lease can be valid; else for the whole
    outage limit.
    """
    link = store if isinstance(store, RetryingStore) else RetryingStore(store, outage=Outage(limit))
    if link.lease_seconds is None and consumer.store is link:
        link.lease_seconds = lost_after * consumer.heartbeat
    return link
