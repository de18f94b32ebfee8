"""
A wake-up call for one waiting task, cheap enough to keep one for each of ten thousand trials.

An ``anyio.Event`` on asyncio wraps an ``asyncio.Event``, whose queue of waiters is made with it
(0.9 KiB in all, for every running trial's heartbeat task). A :class:`Wake` keeps a flag and,
only while its task waits, an asyncio future (0.15 KiB), or on trio an ``anyio.Event``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Generator
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["Wake", "resolve"]


class Wake:
    """Set to wake the one task waiting for it (or the next to wait); each wait clears it."""

    __slots__ = ("_is_set", "_waiter")

    def __init__(self) -> None:
        self._is_set = False
        self._waiter: asyncio.Future[None] | anyio.Event | None = None

    def is_set(self) -> bool:
        """Whether it was set since the last wait ended (and no waiting task took it)."""
        return self._is_set

    def set(self) -> None:
        """Wake the waiting task, if any; else the next wait returns at once."""
        waiter, self._waiter = self._waiter, None
        if isinstance(waiter, asyncio.Future) and not waiter.done():  # a cancelled one is done
            waiter.set_result(None)  # the waiting task takes it: nothing left set
            return
        self._is_set = True
        if isinstance(waiter, anyio.Event):
            waiter.set()

    def __await__(self) -> Generator[Any, None, None]:
        """
        ``await wake``: :meth:`wait` without a limit and without a frame of its own (on asyncio
        a task awaits the future itself: ten thousand trials' tasks wait so).
        """
        if self._is_set or not isinstance(waiter := _waiter(), asyncio.Future):
            return self.wait().__await__()
        self._waiter = waiter
        return waiter.__await__()

    async def wait(self, at_most: float | None = None) -> None:
        """
        Wait until set (a checkpoint only, if it is already), or ``at_most`` seconds; then clear.
        """
        if self._is_set:
            await anyio.lowlevel.checkpoint()
        else:
            waiter = _waiter()
            self._waiter = waiter
            try:
                if isinstance(waiter, asyncio.Future):
                    # no helper's frame without a limit: ten thousand trials' tasks wait here
                    await (waiter if at_most is None else _until(waiter, at_most))
                else:
                    with anyio.move_on_after(math.inf if at_most is None else at_most):
                        await waiter.wait()
            finally:
                if self._waiter is waiter:  # cancelled, or the time is up: nothing left to wake
                    self._waiter = None
        self._is_set = False


async def _until(waiter: asyncio.Future[None], at_most: float) -> None:
    """Wait for ``waiter``, ``at_most`` seconds (a timer that resolves it)."""
    timer = asyncio.get_running_loop().call_later(max(0.0, at_most), resolve, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


def resolve(waiter: asyncio.Future[None]) -> None:
    """Resolve ``waiter``, unless it is done already (its wait was cancelled meanwhile)."""
    if not waiter.done():
        waiter.set_result(None)


def _waiter() -> asyncio.Future[None] | anyio.Event:
    """A future on asyncio; an event on trio (anyio's, which is trio's own there)."""
    try:
        return asyncio.get_running_loop().create_future()
    except RuntimeError:  # no asyncio loop: trio
        return anyio.Event()
