"""
Admission and retry: which attempt may start, when, and whether a failed one runs again.

At most ``max_concurrency`` attempts hold a place at once. An attempt gives its place back as
soon as its script is gone; the next trial's script starts, and only then are this one's
results read and its outcome built (a trial with the same files waits for that). A caller may
take a place before it has a trial (:class:`Place`): a worker reserves a trial only once it can
start at once, while the lane of a trial just ended records that trial's outcome.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Self

import anyio
import anyio.lowlevel

from ._attempt import AttemptParts, AttemptRecord, finish, left_completed, run_attempt
from ._models import Lease, Outcome, Trial
from ._retry import RetryPolicy, log_retry, retry_delay
from ._supervise.metrics import MetricCallback, check_callback
from ._trial.plan import Plan, Planner

__all__ = ["SPARE_LANES", "Admission", "Place", "lanes"]

_YIELDS = 16
"""Passes through the event loop an ended attempt lets a starting one take, at most (a
reservation on SQLite and a start take fewer; a store across a network may take longer)."""
SPARE_LANES = 8
"""A worker's lanes beyond its places, at most: each waits for a place, and reserves a trial
as soon as a script ends, while the lane of the trial that ended records its outcome."""


def lanes(places: int, max_broken: int | None = None) -> int:
    """
    How many lanes (plain tasks) a worker with this many places runs: a spare for each, up to
    eight, but none with ``max_broken`` (a spare reserves the next trial as a script ends,
    before its outcome is counted: at ``-j 1``, one more broken trial than the limit).
    """
    return places + (min(places, SPARE_LANES) if max_broken is None else 0)


class Place:
    """
    One of a consumer's ``max_concurrency`` places for a running script, held until given back.

    ``async with consumer.place() as place`` waits for a free place; ``consumer.run(trial,
    place=place)`` starts the trial's script in it without waiting again, and gives it back as
    soon as the script has ended, before its outcome is built. Leaving the block gives it back
    if it is still held (no trial came). A place given back is taken again by entering it again.
    The task that took a place runs its trial (a place is its task's, as in a capacity limiter).
    """

    __slots__ = ("_held", "_limiter")

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._held = False

    @property
    def held(self) -> bool:
        """Whether it is held now (taken, and not yet given back)."""
        return self._held

    async def __aenter__(self) -> Self:
        if not self._held:
            await self._limiter.acquire()
            self._held = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the place back (nothing if it is not held)."""
        if self._held:
            self._held = False
            self._limiter.release()


class Admission:
    """Plans trials, admits their attempts under the concurrency limit, and retries them."""

    def __init__(
        self, planner: Planner, parts: AttemptParts, retry: RetryPolicy, max_concurrency: int
    ) -> None:
        self._planner = planner
        self._parts = parts
        self.retry = retry
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        # fewer places than CPUs: an ended attempt lets the next start first (see below)
        self._yields_to_starts = max_concurrency < (os.cpu_count() or 1)

    def place(self) -> Place:
        """A place among the ``max_concurrency``, not yet taken (``async with`` takes it)."""
        return Place(self._limiter)

    def plan_of(self, item: Trial | Lease, on_metric: MetricCallback | None = None) -> Plan:
        """
        Check a trial (or a lease's) and plan its first attempt (``on_metric``: its own).

        Raises:
            TemplateError: an unknown placeholder in the command or the config template.
            SlotError: more slots asked for than exist.
        """
        lease = item if isinstance(item, Lease) else None
        trial = item.trial if isinstance(item, Lease) else item
        self._parts.slots.check(trial.slots)
        if on_metric is None:
            return self._planner.plan(trial, lease)
        check_callback(on_metric)
        return replace(self._planner.plan(trial, lease), on_metric=on_metric)

    def completed_earlier(self, lease: Lease) -> Outcome | None:
        """
        The lease's attempt completed from an earlier attempt's files, if one had ended with
        valid results (exit 0) that never reached the store; ``None`` if the trial is to run.
        The caller checks that the store has not recorded a completed result of the trial (one
        made new again by ``rerun`` runs again).
        """
        if lease.trial.attempt <= 1:
            return None
        return left_completed(self._parts, self.plan_of(lease))

    async def run(
        self, plan: Plan, may_start: Callable[[], bool] | None, place: Place | None = None
    ) -> Outcome | None:
        """
        Run a planned trial, retried as ``retry`` says; ``None`` if ``may_start()`` said no.

        Without a gate (``may_start``), the next trial may start before this one's outcome is
        built; with one, the outcome comes first, for the gate may depend on it (``max_broken``).
        A ``place`` the caller holds is used (and given back when the script ends).
        """
        if place is None:
            place = self.place()
        elif place._limiter is not self._limiter:  # its consumer's limit, not this one's
            msg = "the place was taken from another consumer (use this one's place())"
            raise ValueError(msg)
        while True:
            async with place:
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
            await self._let_the_next_start()
            return finish(self._parts, record)
        files, working_dir = self._parts.files, record.plan.paths.text.working_dir
        files.hold(working_dir)
        try:
            await self._let_the_next_start()
            return finish(self._parts, record)
        finally:
            files.release(working_dir)

    async def _let_the_next_start(self) -> None:
        """
        Yield while a place taken waits for its script to start (at most ``_YIELDS`` times):
        a lane that took the place this attempt gave back reserves a trial and starts it, on
        the same thread, before this attempt's outcome is built and recorded.

        Only with fewer places than CPUs, where a place left empty is a CPU left idle: with
        more, the other scripts keep the CPUs busy and the yields would take CPU time from them
        (5 % slower, 1,000 trials of 1 ms at eight places on two CPUs), and ten thousand trials
        ending together would each pass through a loop of ten thousand tasks again.
        """
        await anyio.lowlevel.cancel_shielded_checkpoint()
        if not self._yields_to_starts:
            return
        supervisor = self._parts.supervisor
        for _ in range(_YIELDS - 1):
            if self._limiter.borrowed_tokens <= len(supervisor.running):
                return
            await anyio.lowlevel.cancel_shielded_checkpoint()
