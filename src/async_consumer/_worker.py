"""
The pull loop: reserve a trial from the store, run it, record its outcome; reclaim dead leases.

A worker runs ``max_concurrency`` lanes, each reserving and running one trial at a time, and a
reclaimer that, on a timer, hands back to the queue every trial whose heartbeat is older than
``lost_after`` heartbeats (by the store's own clock). Any live worker does this, so a dead
worker's trials are re-run even when no one happens to be reserving at that moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost
from ._fleet import WorkerInfo, WorkerState
from ._models import Lease, Outcome, Reason, Status, TrialStatus
from ._presence import Presence
from ._resume import ResumePolicy, interrupted_itself, preempted
from ._retry import log_retry, retry_delay
from .stores import TrialStore

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
        resume: how long a trial whose script exited with the interrupt code is held back
            from every worker. This worker never starts such a trial again unless it follows
            (``follow``); a trial interrupted from outside (a signal to the worker, a
            preemption) is not held back.
        job_id: the scheduler's job (e.g. a Slurm array's id) it runs in, shown by ``status``.
        task_id: its index in the job array, if any.
        reserve_until: reserve no trial after this time (seconds since the epoch): a trial
            started later could not finish before the job's end.
    """

    _said_out_of_time = False  # the "too late" line is logged once, by the first lane to stop

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
        resume: ResumePolicy | None = None,
        job_id: str | None = None,
        task_id: str | None = None,
        reserve_until: float | None = None,
    ) -> None:
        if lost_after <= 1:
            msg = f"lost_after must be more than 1 heartbeat, not {lost_after}"
            raise ValueError(msg)
        self._store = store
        self._consumer = consumer
        self._host = socket.gethostname()
        self._name = name or f"{self._host}:{os.getpid()}"
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
        self._job, self._reserve_until = (job_id, task_id), reserve_until
        self._left_on: str | None = None
        self._presence = Presence(store, self.info, consumer.heartbeat)

    # -- configuration and counts, read-only -----------------------------------------------

    @property
    def store(self) -> TrialStore:
        """Where the trials are."""
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
    def interrupted(self) -> AbstractSet[str]:
        """Trials whose script interrupted itself here (not started again without ``follow``)."""
        return self._interrupted

    @property
    def is_halted(self) -> bool:
        """Whether the worker reserves no more trials (interrupted, or ``max_broken`` reached)."""
        broken_out = self._max_broken is not None and self._broken >= self._max_broken
        return self._consumer.is_halted or broken_out

    @property
    def left_on(self) -> str | None:
        """The signal the worker was told to leave by (see :meth:`leave`), if any."""
        return self._left_on

    @property
    def is_out_of_time(self) -> bool:
        """Whether it is too late to start a trial (``reserve_until`` has passed)."""
        return self._reserve_until is not None and time.time() >= self._reserve_until

    def leave(self, signal_name: str) -> None:
        """
        Reserve nothing more and stop every running trial (SIGTERM, grace, SIGKILL); from now
        on an attempt that does not complete is ``preempted`` (see ``_resume.preempted``).
        """
        if self._left_on is None:
            self._left_on = signal_name
        self._consumer.interrupt()

    def info(self) -> WorkerInfo:
        """This worker as its store's ``workers`` table shows it."""
        stopping = self.is_halted or self.is_out_of_time
        return WorkerInfo(
            name=self._name,
            host=self._host,
            pid=os.getpid(),
            job_id=self._job[0],
            task_id=self._job[1],
            running=len(self._consumer.running),
            state=WorkerState.STOPPING if stopping else WorkerState.RUNNING,
        )

    async def run(self) -> None:
        """Run lanes and the reclaimer until every lane is done (drained, halted or cancelled)."""
        await self._presence.record(starting=True)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reclaim_forever)
                tg.start_soon(self._presence.beat_forever)
                async with anyio.create_task_group() as lanes:
                    for _ in range(self.consumer.max_concurrency):
                        lanes.start_soon(self._lane)
                tg.cancel_scope.cancel()
        finally:
            await self._presence.record(state=WorkerState.EXITED)

    async def _lane(self) -> None:
        await self._run_lane()
        if self.is_out_of_time and not self._said_out_of_time:
            self._said_out_of_time = True
            logger.warning("too late to start another trial before the job ends: leaving")

    async def _run_lane(self) -> None:
        while not self.is_halted and not self.is_out_of_time:
            skip = () if self._follow else self._interrupted
            lease = await self.store.reserve(
                self.name, host=self.host, skip=skip, hold=self._follow
            )
            if lease is None:
                if not self._follow and await self._is_drained():
                    return
                await anyio.sleep(self._poll)
                continue
            if not self._follow and lease.trial_id in self._interrupted:
                await self._hand_back(lease, "its script interrupted itself earlier here")
                continue
            await self._run_lease(lease)

    async def _run_lease(self, lease: Lease) -> None:
        try:
            outcome = preempted(await self.consumer.run(lease), self._left_on)
        except BaseException as exc:  # nothing ran (or the caller's error): nothing kept
            await self._hand_back(lease, f"{type(exc).__name__}: {exc}")
            raise
        if interrupted_itself(outcome):
            self._interrupted.add(outcome.trial_id)
        delay = retry_delay(self.consumer.retry, outcome, halted=self.is_halted)
        requeue = delay is not None
        try:
            # shielded: a finish cancelled after its commit would lose the result
            with anyio.CancelScope(shield=True):
                hold = 0.0 if requeue else self._resume.hold(outcome)
                await self.store.finish(lease, outcome, requeue=requeue, hold=hold)
        except LeaseLost:
            self._rejected += 1
            logger.warning(
                "result not recorded: another worker has the trial now",
                extra={"trial_id": lease.trial_id},
            )
            return
        if delay is not None:
            log_retry(outcome, delay)
            await anyio.sleep(delay)
        self._broken += outcome.status is Status.BROKEN and not requeue
        self._count(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _hand_back(self, lease: Lease, why: str) -> None:
        """Give a trial back to the queue, not held (its attempt records why)."""
        message = f"not run: {why}"
        outcome = Outcome(
            trial_id=lease.trial_id,
            attempt=lease.trial.attempt,
            status=Status.INTERRUPTED,
            reason=Reason.CANCELLED,
            message=message,
        )
        with anyio.CancelScope(shield=True), contextlib.suppress(LeaseLost):
            await self.store.finish(lease, outcome)

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
        interval = self.consumer.heartbeat
        while True:
            try:
                reclaimed = await self.store.reclaim_stale(self._lost_after * interval)
            except Exception as exc:  # noqa: BLE001 - the store may be down for a moment
                logger.warning("could not reclaim stale leases: %r", exc)
            else:
                for trial_id in reclaimed:
                    logger.warning(
                        "reclaimed from a worker that stopped beating", extra={"trial_id": trial_id}
                    )
            await anyio.sleep(interval)
