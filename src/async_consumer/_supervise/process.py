"""
Start a script in its own session with its output in log files; stop its whole process group.

Every path out of a running trial goes through :meth:`ChildProcess.stop`: SIGTERM to the group,
a grace period, SIGKILL to the group, and a bounded reap. ``start_new_session=True`` makes the
group id equal to the child's pid, so ``killpg`` reaches every descendant that did not call
``setsid()`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
from anyio.abc import Process

from . import childwatch as _childwatch
from .childwatch import ResourceUsage

__all__ = ["ChildProcess", "Exit", "group_is_alive", "install_child_watcher"]

REAP_BOUND = 5.0
"""Seconds to wait for the kernel to reap a SIGKILLed child (a process in D state can take long)."""


@dataclass(frozen=True, slots=True)
class Exit:
    """How the child ended: ``returncode`` is negative for a signal, as in ``subprocess``."""

    returncode: int
    usage: ResourceUsage | None = None


def _on_asyncio() -> bool:
    """Whether we run on asyncio (else trio, through anyio); anyio needs no sniffio any more."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def install_child_watcher() -> None:
    """
    Reap the children of this process without a thread each, keeping their CPU time and memory.

    On Python 3.11, asyncio watches each child process with a thread of its own and forgets its
    resource usage. This replaces asyncio's child watcher, for the whole process, by one that
    waits on pidfds in the event loop and reaps with ``wait4`` (nothing to do on 3.12 and later,
    which use pidfds already). It is opt-in, like :func:`tune_gc`, because it changes how every
    child of the process is reaped; the ``async-consumer`` command calls it, and so does a
    :class:`Consumer` made with ``child_watcher=True``.
    """
    _childwatch.install()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_is_alive(pgid: int) -> bool:
    """
    Whether any process of the group is still running (zombies count as dead).

    A zombie keeps ``killpg(pgid, 0)`` succeeding until its parent reaps it, and an orphan's
    parent (init, or a container's first process) may never do so; so look at ``/proc``.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with os.scandir("/proc") as entries:
        return any(e.name.isdigit() and _live_member(e.name, pgid) for e in entries)


def _live_member(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != b"Z" and int(fields[2]) == pgid


class ChildProcess:
    """A started script: its process (the leader of its own group) and how it ended."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.pid = process.pid
        self.exit: Exit | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path | None,
        env: Mapping[str, str],
        stdout: BinaryIO,
        stderr: BinaryIO,
        child_watcher: bool = False,
    ) -> ChildProcess:
        """
        Start ``argv`` in a new session, stdin from ``/dev/null``, output to the given logs.

        The caller keeps (and closes) its copies of the log files; the child has its own. With
        ``child_watcher``, the process-wide asyncio child watcher is installed first (see
        :func:`install_child_watcher`).

        Raises:
            OSError: the program does not exist or cannot be executed.
        """
        if child_watcher and _on_asyncio():
            _childwatch.install()
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
        return cls(process)

    async def wait(self) -> Exit:
        """Wait for the child to exit and reap it; the result is kept in :attr:`exit`."""
        if self.exit is None:
            if _on_asyncio():
                returncode = await self.process.wait()
                self.exit = Exit(returncode, _childwatch.pop_usage(self.pid))
            else:
                self.exit = await _wait_with_usage(self.process)
        return self.exit

    def kill_now(self) -> None:
        """SIGKILL the whole group at once (a second Ctrl-C)."""
        _signal_group(self.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> Exit | None:
        """
        Make sure nothing of the group is left running, then return how the leader ended.

        Shielded from cancellation: SIGTERM to the group if anything is alive, up to ``grace``
        seconds for the whole group to exit, SIGKILL to the group, then a bounded reap. Returns
        ``None`` only if the leader could not be reaped within the bound.
        """
        if self.exit is not None and not group_is_alive(self.pid):
            return self.exit  # the common case: the script ended and left nothing behind
        with anyio.CancelScope(shield=True):
            if self.exit is None or group_is_alive(self.pid):
                _signal_group(self.pid, signal.SIGTERM)
                with anyio.move_on_after(grace):
                    await self._wait_group()
                _signal_group(self.pid, signal.SIGKILL)
                with anyio.move_on_after(REAP_BOUND):
                    await self._wait_group()
        return self.exit

    async def _wait_group(self) -> None:
        await self.wait()
        delay = 0.005
        while group_is_alive(self.pid):
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.1)


async def _wait_with_usage(process: Process) -> Exit:
    """
    Reap through a pidfd with ``wait4`` to keep the usage (the trio backend).

    The backend's own ``wait()`` afterwards finds the child gone and returns at once.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        return Exit(await process.wait())
    try:
        await anyio.wait_readable(pidfd)
        try:
            # the pidfd is readable: the child has exited, so this returns at once
            _, status, rusage = os.wait4(process.pid, os.WNOHANG)  # noqa: ASYNC222
        except ChildProcessError:
            return Exit(await process.wait())
    finally:
        os.close(pidfd)
    await process.wait()
    return Exit(os.waitstatus_to_exitcode(status), _childwatch.usage_from(rusage))
