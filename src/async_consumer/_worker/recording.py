"""
Recording a worker's attempts: an outcome written through the group commit, or kept on disk,
and a result an earlier attempt left on disk taken instead of a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio

from .._admission import Place
from .._consumer import Consumer
from .._errors import LeaseLost, StoreUnavailable
from .._models import Lease, Outcome, Status
from .._resume import ResumePolicy
from ..stores._retrying import RetryingStore
from .alive import clear_loss
from .commit import GroupCommit
from .tally import Tally

__all__ = ["Recorder"]

logger = logging.getLogger("async_consumer")


@dataclass(eq=False)
class Recorder:
    """Writes a worker's outcomes; counts those the store refused (``tally.rejected``)."""

    store: RetryingStore
    commits: GroupCommit
    tally: Tally
    resume: ResumePolicy
    leaving: bool = field(default=False, init=False)
    """Whether the worker is leaving (:meth:`leave`)."""

    def leave(self) -> None:
        """The worker leaves: the store's calls are retried no more, finishes not waited for."""
        self.leaving = True
        self.store.outage.give_up()

    async def finish(self, lease: Lease, outcome: Outcome, requeue: bool) -> bool:
        """
        Record the outcome (back in the queue if ``requeue``, else held as ``resume`` says).

        ``False`` if the store refused it (the lease moved on: the loss the store counted
        when it took the lease from this live worker is cleared), or could not be reached while
        the worker leaves (:meth:`leave`; the attempt's files keep it then).

        Raises:
            StoreUnavailable: the store stayed away past the outage limit (not leaving).
        """
        extra = {"trial_id": lease.trial_id}
        hold = 0.0 if requeue else self.resume.hold(outcome)
        try:
            # shielded: a finish cancelled after its commit would lose the result
            with anyio.CancelScope(shield=True):
                await self.commits.finish(lease, outcome, requeue=requeue, hold=hold)
        except LeaseLost as exc:
            self.tally.rejected += 1
            logger.warning("result not recorded: %s", exc, extra=extra)
            await clear_loss(self.store, lease)
            return False
        except StoreUnavailable as exc:
            if not self.leaving:
                raise
            logger.warning("outcome left on disk, the store unreachable: %s", exc, extra=extra)
            return False
        return True

    async def run(self, consumer: Consumer, lease: Lease, place: Place) -> Outcome | None:
        """
        The lease's outcome: from an earlier attempt's files (:meth:`completed_earlier`), or run.

        ``None`` if it never started (the worker halted first): the reservation is undone, its
        attempt number given back (or, if the lease moved on meanwhile, its loss cleared).
        """
        outcome = await self.completed_earlier(consumer, lease)
        if outcome is not None:
            return outcome
        outcome = await consumer.run(lease, place=place)
        if outcome.pid is not None or outcome.status is not Status.INTERRUPTED:
            return outcome
        with anyio.CancelScope(shield=True):
            undone = await self.store.unreserve(lease)
        if not undone:
            await clear_loss(self.store, lease)
        logger.info("not started: %s", outcome.message, extra={"trial_id": lease.trial_id})
        return None

    async def completed_earlier(self, consumer: Consumer, lease: Lease) -> Outcome | None:
        """
        The lease's outcome from an earlier attempt's files (see ``Consumer.completed_earlier``).

        ``None``, the trial is to run: no such files, or the store holds a completed result of
        the trial (it was made new again by ``rerun``: it runs again).
        """
        outcome = consumer.completed_earlier(lease)
        if outcome is None:
            return None
        stored = await self.store.get(lease.trial_id)
        if any(a.outcome and a.outcome.is_completed for a in stored.attempts):
            return None
        return outcome
