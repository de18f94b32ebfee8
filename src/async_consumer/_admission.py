"""
Admission and retry: which attempt may start, when, and whether a failed one runs again.

At most ``max_concurrency`` attempts hold a place at once. An attempt gives its place back as
soon as its script is gone; the next trial's script starts, and only then are this one's
results read and its outcome built (a trial with the same files waits for that).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel

from ._attempt import AttemptParts, AttemptRecord, finish, run_attempt
from ._models import Lease, Outcome, Trial
from ._retry import RetryPolicy, log_retry, retry_delay
from ._trial.plan import Plan, Planner

__all__ = ["Admission"]


class Admission:
    """Plans trials, admits their attempts under the concurrency limit, and retries them."""

    def __init__(
        self, planner: Planner, parts: AttemptParts, retry: RetryPolicy, max_concurrency: int
    ) -> None:
        self._planner = planner
        self._parts = parts
        self.retry = retry
        self._limiter = anyio.CapacityLimiter(max_concurrency)

    def plan_of(self, item: Trial | Lease) -> Plan:
        """
        Check a trial (or a lease's) and plan its first attempt.

        Raises:
            TemplateError: an unknown placeholder in the command or the config template.
            SlotError: more slots asked for than exist.
        """
        lease = item if isinstance(item, Lease) else None
        trial = item.trial if isinstance(item, Lease) else item
        self._parts.slots.check(trial.slots)
        return self._planner.plan(trial, lease)

    async def run(self, plan: Plan, may_start: Callable[[], bool] | None) -> Outcome | None:
        """
        Run a planned trial, retried as ``retry`` says; ``None`` if ``may_start()`` said no.

        Without a gate (``may_start``), the next trial may start before this one's outcome is
        built; with one, the outcome comes first, for the gate may depend on it (``max_broken``).
        """
        while True:
            async with self._limiter:
                if may_start is not None and not may_start():
                    return None
                record = await run_attempt(self._parts, plan)
            if may_start is None:
                outcome = await self._finish_after_a_checkpoint(record)
            else:
                outcome = finish(self._parts, record)
            if plan.lease is not None:
                return outcome  # a lease's retries are its store's, through a worker
            delay = retry_delay(self.retry, outcome, halted=self._parts.supervisor.is_halted)
            if delay is None:
                return outcome
            log_retry(outcome, delay)
            await anyio.sleep(delay)
            plan = self._planner.next_attempt(plan)

    async def _finish_after_a_checkpoint(self, record: AttemptRecord) -> Outcome:
        """
        Let the next trial start its script first, then build this outcome while it runs.

        The attempt's files are held meanwhile: a trial with the same files waits for them.
        """
        if record.exit is None or record.abort is not None:  # no results to read
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return finish(self._parts, record)
        files, working_dir = self._parts.files, record.plan.paths.text.working_dir
        files.hold(working_dir)
        try:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return finish(self._parts, record)
        finally:
            files.release(working_dir)
