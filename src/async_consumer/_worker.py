"""
The pull loop: reserve a trial from the store, run it, record its outcome; reclaim dead leases.

A worker runs ``max_concurrency`` lanes, each reserving and running one trial at a time, and a
reclaimer that, on a timer, hands back to the queue every trial whose heartbeat is older than
``lost_after`` heartbeats (by the store's own clock). Any live worker does this, so a dead
worker's trials are re-run even when no one happens to be reserving at that moment (see
:mod:`._reclaim`; a dead process of this host is noticed at once).

The worker talks to its store through a :class:`RetryingStore`: an unreachable store is waited
for (up to ``outage_limit`` seconds), not a reason to die. It ends early only on an error that is
not the trials' own: a store that stays away, a store error no retry can mend, or a host that
keeps failing to create trials' files. Then it stops its running trials gracefully, gives them
back, and raises that one error.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from collections.abc import Set as AbstractSet

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost, StoreError, TrialFilesError
from ._leasing import Leasing
from ._models import Lease, Outcome, Status, TrialStatus
from ._reclaim import Reclaimer
from ._resume import ResumePolicy, interrupted_itself
from ._retry import log_retry, retry_delay
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
        resume: how long a trial whose script exited with the interrupt code is held back
            from every worker. This worker never starts such a trial again unless it follows
            (``follow``); a trial interrupted from outside (a signal to the worker, a
            preemption) is not held back.
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
        resume: ResumePolicy | None = None,
    ) -> None:
        if lost_after <= 1:
            msg = f"lost_after must be more than 1 heartbeat, not {lost_after}"
            raise ValueError(msg)
        self._store = link = _linked(store, consumer, outage_limit, lost_after)
        self._consumer = consumer
        self._host = host = socket.gethostname()
        self._name = name or f"{host}:{os.getpid()}"
        self._reclaimer = Reclaimer(link, host, consumer.heartbeat, lost_after)
        self._leasing = Leasing(link, self._name, host, holder_name(host), max_file_faults)
        self._leasing.file_fault_backoff = self.file_fault_backoff
        self._error: Exception | None = None
        self._follow = follow
        self._lost_after = lost_after
        self._poll = poll
        self._max_broken = max_broken
        self._on_outcome = on_outcome
        self._resume = resume or ResumePolicy()
        self._interrupted: set[str] = set()
        self._ran = 0
        self._trial_ids: set[str] = set()
        self._slowest: list[Outcome] = []
        self._rejected = 0
        self._broken = 0

    # -- configuration and counts, read-only -----------------------------------------------

    @property
    def store(self) -> RetryingStore:
        """Where the trials are (through the link that waits out outages)."""
        return self._store

    @property
    def consumer(self) -> Consumer:
        """What runs each trial."""
        return self._consumer

    @property
    def host(self) -> str:
        """This host's name, as given to the store."""
        return self._host

    @property
    def name(self) -> str:
        """This worker's name in the store."""
        return self._name

    @property
    def ran(self) -> int:
        """Attempts this worker ran and recorded."""
        return self._ran

    @property
    def trial_ids(self) -> AbstractSet[str]:
        """The trials it ran (ids only: a long-running worker must not keep every outcome)."""
        return self._trial_ids

    @property
    def slowest(self) -> list[Outcome]:
        """Its three slowest attempts, slowest first (a copy)."""
        return list(self._slowest)

    @property
    def rejected(self) -> int:
        """Results the store refused because the lease had moved on (a late worker's)."""
        return self._rejected

    @property
    def broken(self) -> int:
        """Broken outcomes recorded (retried ones not counted)."""
        return self._broken

    @property
    def error(self) -> Exception | None:
        """The error that ended the worker early, if one did."""
        return self._error

    @property
    def interrupted(self) -> AbstractSet[str]:
        """Trials whose script interrupted itself here (not started again without ``follow``)."""
        return self._interrupted

    @property
    def is_halted(self) -> bool:
        """Whether the worker reserves no more trials (interrupted, ``max_broken``, an error)."""
        broken_out = self._max_broken is not None and self._broken >= self._max_broken
        return self._consumer.is_halted or broken_out or self._error is not None

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
        if self._error is not None:
            raise self._error

    def _fail(self, exc: Exception) -> None:
        """End the worker with this error: stop its trials gracefully, reserve no more."""
        if self._error is None:
            self._error = exc
        self._consumer.interrupt()

    async def _lane(self) -> None:
        try:
            while not self.is_halted:
                skip = () if self._follow else self._interrupted
                lease = await self._leasing.reserve(skip=skip, hold=self._follow)
                if lease is None:
                    if not self._follow and await self._is_drained():
                        return
                    await anyio.sleep(self._poll)
                    continue
                try:
                    await self._run(lease)
                finally:
                    self._leasing.done(lease)
        except (StoreError, TrialFilesError) as exc:
            self._fail(exc)

    async def _run(self, lease: Lease) -> None:
        if not self._follow and lease.trial_id in self._interrupted:
            await self._leasing.hand_back(lease, "its script interrupted itself earlier here")
            return
        try:
            outcome = await self.consumer.run(lease)
        except TrialFilesError as exc:
            await self._leasing.give_back(lease, exc)
            return
        except BaseException as exc:  # nothing ran (or the caller's error): nothing kept
            await self._leasing.hand_back(lease, f"{type(exc).__name__}: {exc}")
            raise
        self._leasing.started()
        if interrupted_itself(outcome):
            self._interrupted.add(outcome.trial_id)
        delay = retry_delay(self.consumer.retry, outcome, halted=self.is_halted)
        requeue = delay is not None
        try:
            # shielded: a finish cancelled after its commit would lose the result
            with anyio.CancelScope(shield=True):
                hold = 0.0 if requeue else self._resume.hold(outcome)
                await self.store.finish(lease, outcome, requeue=requeue, hold=hold)
        except LeaseLost as exc:
            self._rejected += 1
            logger.warning("result not recorded: %s", exc, extra={"trial_id": lease.trial_id})
            return
        if delay is not None:
            log_retry(outcome, delay)
            await anyio.sleep(delay)
        self._broken += outcome.status is Status.BROKEN and not requeue
        self._count(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _count(self, outcome: Outcome) -> None:
        self._ran += 1
        self._trial_ids.add(outcome.trial_id)
        if outcome.duration is not None:
            self._slowest.append(outcome)
            self._slowest.sort(key=lambda o: o.duration or 0.0, reverse=True)
            del self._slowest[3:]

    async def _is_drained(self) -> bool:
        counts = await self.store.counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        left = sum(counts.get(status, 0) for status in waiting)
        if self._interrupted and left:
            # the trials this worker will not start again are not waiting for it
            mine = await self.store.counts(self._interrupted)
            left -= mine[TrialStatus.INTERRUPTED]
        return left == 0

    async def _reclaim_forever(self) -> None:
        try:
            await self._reclaimer.run_forever()
        except StoreError as exc:
            self._fail(exc)


def _linked(
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
