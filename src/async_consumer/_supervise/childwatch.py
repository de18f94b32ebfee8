"""
Reap children without a thread each, and keep their resource usage.

Python 3.11's asyncio watches every child with a thread of its own (``ThreadedChildWatcher``):
a thousand trials, a thousand threads. This watcher waits on a pidfd in the event loop instead,
like ``asyncio.PidfdChildWatcher``, and reaps with ``os.wait4`` so the child's CPU time and peak
RSS are kept for the consumer to read. Python 3.12 and later use pidfds on their own; there the
watcher is not installed and resource usage comes from ``/proc`` only where available.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self

__all__ = ["ResourceUsage", "install", "pop_usage"]

_MAX_KEPT: Final = 4096


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU seconds (user + system) and peak resident set size of a reaped child and its reaped descendants."""

    cpu_seconds: float
    peak_rss_bytes: int


def usage_from(rusage: Any) -> ResourceUsage:
    """Convert a ``resource.struct_rusage`` (``ru_maxrss`` is in KiB on Linux)."""
    return ResourceUsage(rusage.ru_utime + rusage.ru_stime, int(rusage.ru_maxrss) * 1024)


_usage: OrderedDict[int, ResourceUsage] = OrderedDict()


def pop_usage(pid: int) -> ResourceUsage | None:
    """Return and forget the usage recorded when ``pid`` was reaped by this watcher."""
    return _usage.pop(pid, None)


def _record(pid: int, usage: ResourceUsage) -> None:
    _usage[pid] = usage
    while len(_usage) > _MAX_KEPT:  # usage nobody asked for (a child of other code)
        _usage.popitem(last=False)


if sys.version_info < (3, 12):

    class _Watcher(asyncio.AbstractChildWatcher):
        """A pidfd child watcher that reaps with ``wait4``."""

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
                _, status, rusage = os.wait4(pid, 0)
            except ChildProcessError:
                returncode = 255  # reaped by someone else: asyncio reports 255 in this case too
            else:
                returncode = os.waitstatus_to_exitcode(status)
                _record(pid, usage_from(rusage))
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
