"""
The pull loop: reserve a trial from the store, run it, record its outcome; reclaim dead leases.

A worker runs ``max_concurrency`` lanes, each reserving and running one trial at a time, and a
reclaimer that, on a timer, hands back to the queue every trial whose heartbeat is older than
``lost_after`` heartbeats (by the store's own clock). Any live worker does this, so a dead
worker's trials are re-run even when no one happens to be reserving at that moment.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost
from ._fleet import WorkerInfo, WorkerState
from ._models import Outcome, Reason, Status, TrialStatus
from ._presence import Presence
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
        job_id: str | None = None,
        task_id: str | None = None,
        reserve_until: float | None = None,
    ) -> None:
        if lost_after <= 1:
            msg = f"lost_after must be more than 1 heartbeat, not {lost_after}"
            raise ValueError(msg)
        self.store = store
        self.consumer = consumer
        self.host = socket.gethostname()
        self.name = name or f"{self.host}:{os.getpid()}"
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
        self.job_id, self.task_id, self.reserve_until = job_id, task_id, reserve_until
        self.left_on: str | None = None
        """The signal the worker was told to leave by (see :meth:`leave`), if any."""
        self._presence = Presence(store, self.info, consumer.heartbeat)

    @property
    def is_halted(self) -> bool:
        """Whether the worker reserves no more trials (interrupted, or ``max_broken`` reached)."""
        broken_out = self.max_broken is not None and self.broken >= self.max_broken
        return self.consumer.is_halted or broken_out

    @property
    def is_out_of_time(self) -> bool:
        """Whether it is too late to start a trial (``reserve_until`` has passed)."""
        return self.reserve_until is not None and time.time() >= self.reserve_until

    def leave(self, signal_name: str) -> None:
        """
        Reserve nothing more and stop every running trial (SIGTERM, grace, SIGKILL).

        Every attempt that ends without completing from now on is recorded interrupted with
        reason ``preempted``: the worker's doing, not the script's, so another worker may
        resume the trial at once (in the same working directory, where its checkpoint is).
        """
        if self.left_on is None:
            self.left_on = signal_name
        self.consumer.interrupt()

    def info(self) -> WorkerInfo:
        """This worker as its store's ``workers`` table shows it."""
        stopping = self.is_halted or self.is_out_of_time
        return WorkerInfo(
            name=self.name,
            host=self.host,
            pid=os.getpid(),
            job_id=self.job_id,
            task_id=self.task_id,
            running=len(self.consumer.running),
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
            lease = await self.store.reserve(self.name, host=self.host)
            if lease is None:
                if not self.follow and await self._is_drained():
                    return
                await anyio.sleep(self.poll)
                continue
            outcome = _left(await self.consumer.run(lease), self.left_on)
            requeue = not self.is_halted and self.consumer.retry.should_retry(outcome)
            try:
                # shielded: a finish cancelled after its commit would lose the result
                with anyio.CancelScope(shield=True):
                    await self.store.finish(lease, outcome, requeue=requeue)
            except LeaseLost:
                self.rejected += 1
                logger.warning("result not recorded: another worker has the trial now",
                               extra={"trial_id": lease.trial_id})  # fmt: skip
                continue
            if requeue:
                delay = self.consumer.retry.delay(outcome.attempt)
                logger.warning("attempt %d %s; retrying in %.1f s", outcome.attempt,
                               outcome.message, delay, extra={"trial_id": lease.trial_id})  # fmt: skip
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
        interval = self.consumer.heartbeat
        while True:
            try:
                reclaimed = await self.store.reclaim_stale(self.lost_after * interval)
            except Exception as exc:  # noqa: BLE001 - the store may be down for a moment
                logger.warning("could not reclaim stale leases: %r", exc)
            else:
                for trial_id in reclaimed:
                    logger.warning("reclaimed from a worker that stopped beating",
                                   extra={"trial_id": trial_id})  # fmt: skip
            await anyio.sleep(interval)


def _left(outcome: Outcome, signal_name: str | None) -> Outcome:
    """An attempt stopped because the worker left is ``preempted``, however the script ended."""
    if signal_name is None or outcome.status in (Status.COMPLETED, Status.LOST):
        return outcome
    message = f"the worker got {signal_name} and stopped it; another worker resumes it"
    update = {"status": Status.INTERRUPTED, "reason": Reason.PREEMPTED, "message": message}
    return outcome.model_copy(update=update)
