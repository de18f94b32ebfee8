"""
Which trial a worker leases next, and when: suspects run alone, a failing disk pauses the lanes.

A *suspect* is a trial that lost a lease before: its worker may have died of it. Only a worker
with nothing else running reserves one, and it reserves nothing more while the suspect runs, so
that if the suspect kills this worker no healthy trial is lost with it, and the death is charged
to the suspect alone. A host that cannot create trials' files gives each trial back and pauses
every lane (0.5 s, doubling), and gives up after ``max_file_faults`` failures in a row.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Collection

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost, TrialFilesError
from ._models import Lease, Outcome, Reason, Status, TrialStatus
from .stores import TrialStore
from .stores._retrying import Outage, RetryingStore

__all__ = ["Leasing", "link_store"]

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
        self._held = 0  # leases held now
        self._alone: anyio.Event | None = None  # set when the suspect running alone has ended
        self._reserving = anyio.Lock()
        self._file_faults = 0  # in a row
        self._paused_until = 0.0  # no lane reserves before (a pause after a file fault)

    async def reserve(self, skip: Collection[str] = (), hold: bool = True) -> Lease | None:
        """
        A lease on the next trial this worker may run now (``None``: nothing for it now).

        ``skip`` and ``hold`` are passed on to the store's ``reserve``.
        """
        await anyio.sleep(max(0.0, self._paused_until - anyio.current_time()))
        async with self._reserving:
            while self._alone is not None:
                await self._alone.wait()
            lease = await self.store.reserve(
                self.name,
                host=self.host,
                skip=skip,
                hold=hold,
                holder=self.holder,
                suspects=self._held == 0,
            )
            if lease is not None:
                self._held += 1
                self._alone = anyio.Event() if lease.lost_count else None
            return lease

    def done(self, lease: Lease) -> None:
        """The lease's attempt has ended (recorded or not): another may be reserved."""
        self._held -= 1
        if lease.lost_count and self._alone is not None:
            self._alone.set()
            self._alone = None

    def started(self) -> None:
        """A trial's files were created: the disk is fine again."""
        self._file_faults = 0

    async def hand_back(self, lease: Lease, why: str) -> None:
        """Give a trial back to the queue, not held (its attempt records why)."""
        outcome = Outcome(
            trial_id=lease.trial_id,
            attempt=lease.trial.attempt,
            status=Status.INTERRUPTED,
            reason=Reason.CANCELLED,
            message=f"not run: {why}",
        )
        with anyio.CancelScope(shield=True), contextlib.suppress(LeaseLost):
            await self.store.finish(lease, outcome)

    async def give_back(self, lease: Lease, exc: TrialFilesError) -> None:
        """
        Requeue a trial this host could not start, without counting a loss; pause the lanes.

        Raises:
            TrialFilesError: ``max_file_faults`` failures in a row.
        """
        self._file_faults += 1
        outcome = Outcome(
            trial_id=lease.trial_id,
            attempt=lease.trial.attempt,
            status=Status.INTERRUPTED,
            reason=Reason.HOST_FAULT,
            message=f"not started: {exc}",
        )
        with anyio.CancelScope(shield=True):
            await self.store.finish(lease, outcome, requeue=True)
        if self._file_faults >= self.max_file_faults:
            raise exc
        delay = min(30.0, self.file_fault_backoff * 2.0 ** (self._file_faults - 1))
        delay *= random.uniform(0.75, 1.25)
        self._paused_until = max(self._paused_until, anyio.current_time() + delay)
        extra = {"trial_id": lease.trial_id}
        logger.warning(
            "%s; trial given back, pausing %.1f s (%d/%d)",
            exc,
            delay,
            self._file_faults,
            self.max_file_faults,
            extra=extra,
        )

    async def is_drained(self, interrupted: Collection[str] = ()) -> bool:
        """Whether no trial is left for this worker (``interrupted``: those it will not start)."""
        counts = await self.store.counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        left = sum(counts.get(status, 0) for status in waiting)
        if interrupted and left:
            # the trials this worker will not start again are not waiting for it
            mine = await self.store.counts(interrupted)
            left -= mine[TrialStatus.INTERRUPTED]
        return left == 0


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
