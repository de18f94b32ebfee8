"""
Many trials at once: outcomes stream back in completion order, more trials can join meanwhile.

Outcomes travel through a memory object stream out of a task group that lives inside an async
context manager; nothing is yielded from inside the group (anyio calls that cancel-scope
corruption). Leaving the block early cancels every trial still running, and their process
groups are stopped before the block is left.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._admission import Admission
from ._models import Lease, Outcome, Status, Trial
from ._trial.plan import Plan

__all__ = ["Batch", "open_batch", "run_map"]


class Batch:
    """
    A running batch: iterate over it for outcomes as trials finish; :meth:`add` more at any time.

    Iteration ends when every trial added so far has its outcome, so an orchestrator that adds
    a trial each time one finishes keeps the batch going.
    """

    def __init__(
        self, admission: Admission, tg: anyio.abc.TaskGroup, max_broken: int | None
    ) -> None:
        self._admission = admission
        self._tg = tg
        self._max_broken = max_broken
        self._send: MemoryObjectSendStream[Outcome | None]
        self._receive: MemoryObjectReceiveStream[Outcome | None]
        self._send, self._receive = anyio.create_memory_object_stream[Outcome | None](math.inf)
        self._pending = 0
        self._last_turn: anyio.Event | None = None
        self._broken = 0
        self._skipped: list[Trial] = []

    @property
    def broken(self) -> int:
        """Broken outcomes so far."""
        return self._broken

    @property
    def skipped(self) -> list[Trial]:
        """Trials never started because ``max_broken`` was reached (a copy)."""
        return list(self._skipped)

    @property
    def is_halted(self) -> bool:
        """Whether the batch stopped launching trials (``max_broken`` reached)."""
        return self._max_broken is not None and self._broken >= self._max_broken

    def _may_start(self) -> bool:
        return not self.is_halted

    def add(self, trial: Trial | Lease) -> None:
        """
        Queue one more trial; it starts when a place (and its slots) are free.

        Raises:
            TemplateError: the trial cannot be rendered (nothing is queued).
            SlotError: the trial asks for more slots than exist (nothing is queued).
        """
        self._queue([self._admission.plan_of(trial)])

    def add_all(self, trials: Iterable[Trial | Lease]) -> None:
        """Queue several trials, after checking all of them (none is queued if one is bad)."""
        self._queue([self._admission.plan_of(trial) for trial in trials])

    def _queue(self, plans: Iterable[Plan]) -> None:
        for plan in plans:
            self._pending += 1
            after = self._last_turn
            if after is not None and after.is_set():
                after = None  # the trial before has joined the queue already
            self._last_turn = turn = anyio.Event()
            self._tg.start_soon(self._run, plan, after, turn)

    async def _run(self, plan: Plan, after: anyio.Event | None, turn: anyio.Event) -> None:
        # trials join the queue for a place in the order they were queued: trio runs a batch of
        # new tasks in random order, and a later trial would otherwise start first
        try:
            if after is not None:
                await after.wait()
        finally:
            turn.set()  # nothing yields from here until this trial is in the limiter's queue
        # with max_broken, each outcome must be counted before the next trial may start
        gate = None if self._max_broken is None else self._may_start
        outcome = await self._admission.run(plan, gate)
        if outcome is None:
            self._skipped.append(plan.trial)
        elif outcome.status is Status.BROKEN:
            self._broken += 1
        self._send.send_nowait(outcome)

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> Outcome:
        while self._pending:
            outcome = await self._receive.receive()
            self._pending -= 1
            if outcome is not None:  # None: a trial that never started
                return outcome
        raise StopAsyncIteration


@asynccontextmanager
async def open_batch(
    admission: Admission, trials: Iterable[Trial | Lease], max_broken: int | None
) -> AsyncIterator[Batch]:
    """The machinery behind :meth:`Consumer.run_batch`."""
    # planned before the task group: a bad trial raises alone, not in an ExceptionGroup
    plans = [admission.plan_of(trial) for trial in trials]
    try:
        async with anyio.create_task_group() as tg:
            batch = Batch(admission, tg, max_broken)
            try:
                batch._queue(plans)
                del plans  # each trial's task holds its own plan, for as long as it runs
                yield batch
            finally:
                tg.cancel_scope.cancel()  # early exit: stop what still runs (shielded stops)
                batch._send.close()
                batch._receive.close()
    except BaseExceptionGroup as group:
        # one error (an on_metric callback's, the caller's own): raised as itself
        lone = _lone(group)
        if lone is None:
            raise
        raise lone from None


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only error in a (nested) group, or ``None`` if there are several."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack and len(leaves) < 2:
        error = stack.pop()
        if isinstance(error, BaseExceptionGroup):
            stack.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 and not stack else None


async def run_map(
    admission: Admission, trials: Sequence[Trial | Lease], max_broken: int | None
) -> list[Outcome | None]:
    """Run trials and return their outcomes in input order (``None`` for a trial never started)."""
    by_id = {(t.trial.id if isinstance(t, Lease) else t.id): i for i, t in enumerate(trials)}
    if len(by_id) != len(trials):
        msg = "trial ids must be unique within one call"
        raise ValueError(msg)
    outcomes: list[Outcome | None] = [None] * len(trials)
    async with open_batch(admission, trials, max_broken) as batch:
        async for outcome in batch:
            outcomes[by_id[outcome.trial_id]] = outcome
    return outcomes
