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
from collections.abc import Callable

import anyio

from ._consumer import Consumer
from ._errors import LeaseLost
from ._models import Lease, Outcome, Reason, Status, TrialStatus
from ._resume import ResumePolicy, interrupted_itself
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
    """

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
        self.resume = resume or ResumePolicy()
        self.interrupted: set[str] = set()
        """Trials whose script interrupted itself here (not started again without ``follow``)."""
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
        return self.consumer.is_halted or broken_out

    async def run(self) -> None:
        """Run lanes and the reclaimer until every lane is done (drained, halted or cancelled)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reclaim_forever)
            async with anyio.create_task_group() as lanes:
                for _ in range(self.consumer.max_concurrency):
                    lanes.start_soon(self._lane)
            tg.cancel_scope.cancel()

    async def _lane(self) -> None:
        while not self.is_halted:
            skip = () if self.follow else self.interrupted
            lease = await self.store.reserve(self.name, host=self.host, skip=skip, hold=self.follow)
            if lease is None:
                if not self.follow and await self._is_drained():
                    return
                await anyio.sleep(self.poll)
                continue
            if not self.follow and lease.trial_id in self.interrupted:
                await self._hand_back(lease, "its script interrupted itself earlier here")
                continue
            try:
                outcome = await self.consumer.run(lease)
            except BaseException as exc:  # nothing ran (or the caller's error): nothing kept
                await self._hand_back(lease, f"{type(exc).__name__}: {exc}")
                raise
            if interrupted_itself(outcome):
                self.interrupted.add(outcome.trial_id)
            requeue = not self.is_halted and self.consumer.retry.should_retry(outcome)
            try:
                # shielded: a finish cancelled after its commit would lose the result
                with anyio.CancelScope(shield=True):
                    hold = 0.0 if requeue else self.resume.hold(outcome)
                    await self.store.finish(lease, outcome, requeue=requeue, hold=hold)
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
        self.ran += 1
        self.trial_ids.add(outcome.trial_id)
        if outcome.duration is not None:
            self.slowest.append(outcome)
            self.slowest.sort(key=lambda o: o.duration or 0.0, reverse=True)
            del self.slowest[3:]

    async def _is_drained(self) -> bool:
        counts = await self.store.counts()
        waiting = (TrialStatus.NEW, TrialStatus.INTERRUPTED, TrialStatus.RESERVED)
        left = sum(counts.get(status, 0) for status in waiting)
        if self.interrupted and left:
            # the trials this worker will not start again are not waiting for it
            mine = await self.store.counts(self.interrupted)
            left -= mine[TrialStatus.INTERRUPTED]
        return left == 0

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
