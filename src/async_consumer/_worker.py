"""
The pull loop: reserve a trial from the store, run it, record its outcome; reclaim dead leases.

A worker runs ``max_concurrency`` lanes, each reserving and running one trial at a time, and a
reclaimer that, on a timer, hands back to the queue every trial whose heartbeat is older than
``lost_after`` heartbeats (by the store's own clock). Any live worker does this, so a dead
worker's trials are re-run even when no one happens to be reserving at that moment.

The worker talks to its store through a :class:`RetryingStore`: an unreachable store is waited
for (up to ``outage_limit`` seconds), not a reason to die. It ends early only on an error that is
not the trials' own: a store that stays away, a store error no retry can mend, or a host that
keeps failing to create trials' files. Then it stops its running trials gracefully, gives them
back, and raises that one error.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost, StoreError, TrialFilesError
from ._models import Lease, Outcome, Reason, Status, TrialStatus
from ._reclaim import Reclaimer
from ._supervise.holder import holder_name
from .stores import TrialStore
from .stores._retrying import DEFAULT_OUTAGE_LIMIT, Outage, RetryingStore

__all__ = ["Worker"]

logger = logging.getLogger("async_consumer")


class Worker:
    """
    Pulls trials from a store and runs them with a consumer until the store is drained.

    Args:
        store: where the trials are; shared with other workers.
        consumer: runs each trial; its ``store`` must be this store (for the heartbeats), and
            its ``heartbeat`` and ``max_concurrency`` set the worker's pace and lanes.
        name: this worker's name in the store (default: ``host:pid``).
        follow: keep waiting for new trials instead of stopping when the store is drained.
        lost_after: a lease is stale after this many heartbeat intervals without a beat.
        poll: seconds between two looks at an empty store.
        max_broken: reserve nothing more after this many broken outcomes.
        on_outcome: called with each outcome as it is recorded.
        outage_limit: seconds the store may stay unreachable before the worker gives up (when
            ``store`` is not already a :class:`RetryingStore`, which brings its own).
        max_file_faults: give up after failing this many times in a row to create a trial's
            files (a full or read-only disk); each failure gives the trial back and backs off.
    """

    file_fault_backoff = 0.5
    """Seconds of the first pause after a trial's files could not be created (then doubled)."""

    def __init__(
        self,
        store: TrialStore,
        consumer: Consumer,
        *,
        name: str | None = None,
        follow: bool = False,
        lost_after: float = 3.0,
        poll: float = 0.5,
        max_broken: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        outage_limit: float = DEFAULT_OUTAGE_LIMIT,
        max_file_faults: int = 5,
    ) -> None:
        if lost_after <= 1:
            msg = f"lost_after must be more than 1 heartbeat, not {lost_after}"
            raise ValueError(msg)
        if not isinstance(store, RetryingStore):
            store = RetryingStore(store, outage=Outage(outage_limit))
        if store.lease_seconds is None:
            store.lease_seconds = lost_after * consumer.heartbeat
        if consumer.store is store.store:
            consumer.store = store  # the heartbeats go through the same link
        self.store = store
        self.consumer = consumer
        self.max_file_faults = max_file_faults
        self._file_faults = 0  # in a row
        self._paused_until = 0.0  # no lane reserves before (a backoff after a file fault)
        self.error: Exception | None = None
        """The error that ended the worker early, if one did."""
        self.host = socket.gethostname()
        self.name = name or f"{self.host}:{os.getpid()}"
        self.holder = holder_name(self.host)
        """This process as a lease holder (``host/pid/start``): a dead one is seen at once."""
        self.reclaimer = Reclaimer(store, self.host, consumer.heartbeat, lost_after)
        self._held = 0  # leases held now
        self._alone: anyio.Event | None = None  # set when the suspect running alone has ended
        self._reserving = anyio.Lock()
        self.follow = follow
        self.lost_after = lost_after
        self.poll = poll
        self.max_broken = max_broken
        self.on_outcome = on_outcome
        self.ran = 0
        """Attempts this worker ran and recorded."""
        self.trial_ids: set[str] = set()
        """The trials it ran (ids only: a long-running worker must not keep every outcome)."""
        self.slowest: list[Outcome] = []
        """Its three slowest attempts."""
        self.rejected = 0
        """Results the store refused because the lease had moved on (a late worker's)."""
        self.broken = 0

    @property
    def is_halted(self) -> bool:
        """Whether the worker reserves no more trials (interrupted, or ``max_broken`` reached)."""
        broken_out = self.max_broken is not None and self.broken >= self.max_broken
        return self.consumer.is_halted or broken_out or self.error is not None

    async def run(self) -> None:
        """
        Run lanes and the reclaimer until every lane is done (drained, halted or cancelled).

        Raises:
            StoreUnavailable: the store stayed unreachable longer than the outage limit.
            StoreError: the store failed in a way no retry can mend (a newer schema...).
            TrialFilesError: this host failed to create trials' files ``max_file_faults``
                times in a row (the message names the directory).
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reclaim_forever)
            async with anyio.create_task_group() as lanes:
                for _ in range(self.consumer.max_concurrency):
                    lanes.start_soon(self._lane)
            tg.cancel_scope.cancel()
        if self.error is not None:
            raise self.error

    def _fail(self, exc: Exception) -> None:
        """End the worker with this error: stop its trials gracefully, reserve no more."""
        if self.error is None:
            self.error = exc
        self.consumer.interrupt()

    async def _lane(self) -> None:
        try:
            while not self.is_halted:
                await anyio.sleep(max(0.0, self._paused_until - anyio.current_time()))
                lease = await self._reserve()
                if self.is_halted:
                    return
                if lease is None:
                    if not self.follow and await self._is_drained():
                        return
                    await anyio.sleep(self.poll)
                    continue
                await self._run(lease)
        except (StoreError, TrialFilesError) as exc:
            self._fail(exc)

    async def _reserve(self) -> Lease | None:
        """
        Reserve a trial as the policy on suspects says.

        A suspect (a trial that lost a lease before: its worker may have died of it) is reserved
        only by a worker with nothing else running, and runs alone: if it kills this worker,
        no healthy trial is lost with it, and the death is charged to the suspect alone.
        """
        async with self._reserving:
            while self._alone is not None:
                await self._alone.wait()
            if self.is_halted:
                return None
            lease = await self.store.reserve(self.name, host=self.host, holder=self.holder,
                                             suspects=self._held == 0)  # fmt: skip
            if lease is not None:
                self._held += 1
                self._alone = anyio.Event() if lease.lost_count else None
            return lease

    async def _run(self, lease: Lease) -> None:
        try:
            await self._run_held(lease)
        finally:
            self._held -= 1
            if lease.lost_count and self._alone is not None:
                self._alone.set()
                self._alone = None

    async def _run_held(self, lease: Lease) -> None:
        try:
            outcome = await self.consumer.run(lease)
        except TrialFilesError as exc:
            await self._give_back(lease, exc)
            return
        self._file_faults = 0
        requeue = not self.is_halted and self.consumer.retry.should_retry(outcome)
        try:
            # shielded: a finish cancelled after its commit would lose the result
            with anyio.CancelScope(shield=True):
                await self.store.finish(lease, outcome, requeue=requeue)
        except LeaseLost as exc:
            self.rejected += 1
            logger.warning("result not recorded: %s", exc, extra={"trial_id": lease.trial_id})
            return
        await self._record(outcome, requeue)

    async def _give_back(self, lease: Lease, exc: TrialFilesError) -> None:
        """Requeue a trial this host could not start, without counting a loss; back off."""
        self._file_faults += 1
        message = f"not started: {exc}"
        outcome = Outcome(trial_id=lease.trial_id, attempt=lease.trial.attempt, message=message,
                          status=Status.INTERRUPTED, reason=Reason.HOST_FAULT)  # fmt: skip
        with anyio.CancelScope(shield=True):
            await self.store.finish(lease, outcome, requeue=True)
        if self._file_faults >= self.max_file_faults:
            raise exc
        delay = min(30.0, self.file_fault_backoff * 2.0 ** (self._file_faults - 1))
        delay *= random.uniform(0.75, 1.25)
        self._paused_until = max(self._paused_until, anyio.current_time() + delay)
        logger.warning("%s; trial given back, pausing %.1f s (%d/%d)", exc, delay,
                       self._file_faults, self.max_file_faults, extra={"trial_id": lease.trial_id})  # fmt: skip

    async def _record(self, outcome: Outcome, requeue: bool) -> None:
        if requeue:
            delay = self.consumer.retry.delay(outcome.attempt)
            logger.warning("attempt %d %s; retrying in %.1f s", outcome.attempt, outcome.message,
                           delay, extra={"trial_id": outcome.trial_id})  # fmt: skip
            await anyio.sleep(delay)
        self.broken += outcome.status is Status.BROKEN and not requeue
        self._count(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _count(self, outcome: Outcome) -> None:
        self.ran += 1
        self.trial_ids.add(outcome.trial_id)
        if outcome.duration is not None:
            self.slowest.append(outcome)
            self.slowest.sort(key=lambda o: o.duration or 0.0, reverse=True)
            del self.slowest[3:]

    async def _is_drained(self) -> bool:
        counts = await self.store.counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        return sum(counts.get(status, 0) for status in waiting) == 0

    async def _reclaim_forever(self) -> None:
        try:
            await self.reclaimer.run_forever()
        except StoreError as exc:
            self._fail(exc)
