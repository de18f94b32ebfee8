"""
A child's exit, seen on its pidfd; resource usage of a reaped child; on Python 3.11, an asyncio
child watcher without threads.

A trial's script is reaped by :class:`~.process.ChildProcess` itself, with ``wait4``, on every
Python and both backends; no child watcher is involved. What is left here serves *other*
children of the process started through asyncio's own subprocess API (``git`` for the code
version, a user's own): Python 3.11 watches each with a thread of its own
(``ThreadedChildWatcher``), and :func:`install` replaces that, for the whole process, with a
watcher that waits on pidfds in the event loop, like ``asyncio.PidfdChildWatcher``. Python 3.12
and later use pidfds on their own (and deprecate child watchers; 3.14 removes them), so there
:func:`install` does nothing and touches no deprecated API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self

import anyio

from .wake import resolve

__all__ = ["ResourceUsage", "exited", "install", "unwatch", "usage_from"]


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU seconds (user + system) and peak resident set size of a reaped child and its reaped descendants."""

    cpu_seconds: float
    peak_rss_bytes: int


def usage_from(rusage: Any) -> ResourceUsage:
    """Convert a ``resource.struct_rusage`` (``ru_maxrss`` is in KiB on Linux)."""
    return ResourceUsage(rusage.ru_utime + rusage.ru_stime, int(rusage.ru_maxrss) * 1024)


def exited(pidfd: int) -> Awaitable[None]:
    """
    What to await until a child's ``pidfd`` is readable: the child has exited (not reaped).
    Call :func:`unwatch` once it is awaited (or the wait cancelled).

    On asyncio a reader of the loop's own resolves a future, awaited as it is (no frame of a
    coroutine's): ``anyio.wait_readable`` keeps a closure, its cells and a map of its own
    besides (0.5 KiB for every running trial).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        return anyio.wait_readable(pidfd)
    readable = loop.create_future()
    loop.add_reader(pidfd, resolve, readable)
    return readable


def unwatch(pidfd: int) -> None:
    """Stop watching ``pidfd`` (after :func:`exited`), before it is closed; idempotent."""
    with contextlib.suppress(RuntimeError):  # trio: anyio's wait left nothing behind
        asyncio.get_running_loop().remove_reader(pidfd)


if sys.version_info < (3, 12):

    class _Watcher(asyncio.AbstractChildWatcher):
        """A pidfd child watcher, as ``asyncio.PidfdChildWatcher``, that never blocks the loop."""

        def __init__(self) -> None:
            self._pidfds: dict[int, tuple[int, asyncio.AbstractEventLoop]] = {}

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

        def is_active(self) -> bool:
            return True

        def close(self) -> None:
            for pid in list(self._pidfds):
                self.remove_child_handler(pid)

        def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
            return None

        def add_child_handler(
            self, pid: int, callback: Callable[..., object], *args: object
        ) -> None:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(pid)
            self._pidfds[pid] = (pidfd, loop)
            loop.add_reader(pidfd, self._reap, pid, callback, args)

        def remove_child_handler(self, pid: int) -> bool:
            entry = self._pidfds.pop(pid, None)
            if entry is None:
                return False
            pidfd, loop = entry
            if not loop.is_closed():
                loop.remove_reader(pidfd)
            os.close(pidfd)
            return True

        def _reap(
            self, pid: int, callback: Callable[..., object], args: tuple[object, ...]
        ) -> None:
            self.remove_child_handler(pid)
            try:
                _, status = os.waitpid(pid, 0)  # the pidfd is readable: the child has exited
            except ChildProcessError:
                returncode = 255  # reaped by someone else: asyncio reports 255 in this case too
            else:
                returncode = os.waitstatus_to_exitcode(status)
            callback(pid, returncode, *args)

    def install() -> None:
        """Make the running policy use our watcher, unless it already does."""
        policy = asyncio.get_event_loop_policy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            current = policy.get_child_watcher()
            if not isinstance(current, _Watcher):
                watcher = _Watcher()
                policy.set_child_watcher(watcher)
                current.close()

else:  # pragma: no cover - Python 3.12+ already waits on pidfds without threads

    def install() -> None:
        """Nothing to do: the event loop uses pidfds already."""
