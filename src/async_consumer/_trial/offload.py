"""
Where a trial's files are created: inline on the event loop while that is cheap, else in threads.

On a local disk creating them takes about a tenth of a millisecond, less than a hop to a thread
costs, so it is done inline. Where it has lately taken over a millisecond (a network file
system, a disk busy with deletions), threads do it, off the event loop, and one trial in 8 is
still prepared inline to notice when the disk is fast again (a time measured in a thread
includes its waits for the interpreter lock). Past 50 ms, no trial is prepared inline (the event
loop would stall with it): the threads' times, then mostly the disk's, tell when it is worth
trying again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread

__all__ = ["INLINE_SECONDS", "PROBE_LIMIT", "Offload"]

INLINE_SECONDS = 0.001
"""Work is done inline while it takes less than this on average."""

PROBE_LIMIT = 0.05
"""Above this average, no work is done inline, not even to measure."""

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


class Offload:
    """
    Runs blocking file work inline or in a thread, as its recent cost says (see the module).

    Args:
        clock: seconds, monotonic (``time.perf_counter``; tests give a fake one).
        inline_seconds: the average below which work runs inline.
        probe_limit: the average above which no work runs inline, not even to measure.
        threads: the most threads doing this work at once.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        *,
        inline_seconds: float = INLINE_SECONDS,
        probe_limit: float = PROBE_LIMIT,
        threads: int = 4,
    ) -> None:
        self._clock = clock
        self._inline = inline_seconds
        self._probe_limit = probe_limit
        self._limiter = anyio.CapacityLimiter(threads)
        self._seconds = 0.0  # a moving average of the time the work takes, where measured
        self._count = 0

    async def run(self, work: Callable[[Unpack[_Args]], _T], *args: *_Args) -> _T:
        """Run ``work(*args)`` inline or in a thread; return what it returns."""
        self._count += 1
        average = self._seconds
        if average < self._inline or (average < self._probe_limit and self._count % 8 == 0):
            return self._measured(work, *args)
        if average < self._probe_limit:
            return await anyio.to_thread.run_sync(work, *args, limiter=self._limiter)
        return await anyio.to_thread.run_sync(self._measured, work, *args, limiter=self._limiter)

    def _measured(self, work: Callable[[Unpack[_Args]], _T], *args: *_Args) -> _T:
        start = self._clock()
        try:
            return work(*args)
        finally:
            took = self._clock() - start
            self._seconds += (took - self._seconds) * 0.25  # a moving average
