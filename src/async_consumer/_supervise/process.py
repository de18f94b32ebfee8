"""
Start a script in its own session with its output in log files; stop its whole process group.

Every path out of a running trial goes through :meth:`ChildProcess.stop`: SIGTERM to the group,
a grace period, SIGKILL to the group, and a bounded reap. ``start_new_session=True`` makes the
group id equal to the child's pid, so ``killpg`` reaches every descendant that did not call
``setsid()`` itself.

This module owns the wait for its children, on both backends, and reaps each with ``wait4`` once
a pidfd says it has exited, so that every outcome has the child's CPU time and peak RSS. On
asyncio it starts the child itself with ``subprocess.Popen`` (as asyncio does, on the loop's
thread) because asyncio's own subprocesses are reaped by the loop's child watcher, which keeps
no resource usage and whose API is deprecated in 3.12 and gone in 3.14; on trio it starts the
child with ``anyio.open_process``, since trio reaps only when asked to. docs/design-notes.md has
the reasons and the alternatives measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict

import anyio
import anyio.to_thread
from anyio.abc import Process

from . import childwatch as _childwatch
from .childwatch import ResourceUsage, exited, unwatch, usage_from

__all__ = ["ChildProcess", "Exit", "group_is_alive", "install_child_watcher", "on_asyncio"]

REAP_BOUND = 5.0  # seconds to wait for the kernel to reap a SIGKILLed child (in D state: long)


@dataclass(frozen=True, slots=True)
class Exit:
    """How the child ended: ``returncode`` is negative for a signal, as in ``subprocess``."""

    returncode: int
    usage: ResourceUsage | None = None


def on_asyncio() -> bool:
    """Whether we run on asyncio (else trio, through anyio); anyio needs no sniffio any more."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def install_child_watcher() -> None:
    """
    Reap the process's *other* asyncio subprocesses without a thread each (Python 3.11).

    A consumer reaps its trials' scripts itself, through pidfds and ``wait4``, on every Python
    and both loops: they never need this, and their CPU time and memory are recorded without it.
    On Python 3.11, asyncio watches each child it starts itself (``git`` for the code version, a
    program's own subprocesses) with a thread; this replaces that child watcher, for the whole
    process, by one that waits on pidfds in the event loop (nothing to do on 3.12 and later,
    which use pidfds already and deprecate child watchers). It is opt-in, like :func:`tune_gc`,
    because it changes how every asyncio child of the process is reaped; the ``async-consumer``
    command calls it, and so does a :class:`Consumer` made with ``child_watcher=True``.
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
    """
    A started script: the leader of its own group, and how it ended.

    This class owns the wait for its child on both backends (see the module's docstring): it
    reaps with ``wait4`` once a pidfd says the child has exited, so every :class:`Exit` it
    returns carries the child's CPU time and peak RSS.
    """

    def __init__(self, pid: int, handle: Process | None) -> None:
        self.pid = pid
        self.exit: Exit | None = None
        self._handle = handle
        # opened before anything can reap the child, so the pid cannot have been reused
        self._pidfd = _open_pidfd(pid)
        self._waiting = False  # a task is waiting on the pidfd (only one may)
        self._waited: anyio.Event | None = None  # made only if a second task waits meanwhile

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
        spawners: anyio.CapacityLimiter | None = None,
    ) -> ChildProcess:
        """
        Start ``argv`` in a new session, stdin from ``/dev/null``, output to the given logs.

        The caller keeps (and closes) its copies of the log files; the child has its own. With
        ``child_watcher``, the process-wide asyncio child watcher is installed first (see
        :func:`install_child_watcher`). With ``spawners``, it starts in a worker thread under
        that limiter, shielded (a started child is never lost to a cancellation).

        Raises:
            OSError: the program does not exist or cannot be executed.
        """
        options = _options(cwd, env, stdout, stderr)
        if not on_asyncio():
            return await cls._start_on_trio(argv, options)
        if child_watcher:
            _childwatch.install()
        # as asyncio's create_subprocess_exec, minus its child watcher (which would reap it)
        spawn = functools.partial(_spawn, argv, options)
        if spawners is None:  # on the loop's thread: nothing to shield, nothing awaited
            popen = spawn()
        else:
            with anyio.CancelScope(shield=True):
                popen = await anyio.to_thread.run_sync(spawn, limiter=spawners)
        # not kept (0.6 KiB a running trial), and given a status so that it never polls (reaps)
        # the child itself, as its __del__ would: the child is reaped here
        popen.returncode = 255
        return cls(popen.pid, None)

    @classmethod
    async def _start_on_trio(cls, argv: Sequence[str], options: _Options) -> ChildProcess:
        # trio reaps only inside Process.wait() (or reading returncode), which we call after
        # wait4: the launch stays anyio's (a worker thread, off the event loop)
        process = await anyio.open_process(list(argv), **options)
        return cls(process.pid, process)

    async def wait(self) -> Exit:
        """Wait for the child to exit and reap it; the result is kept in :attr:`exit`."""
        # one frame, not a helper's besides: ten thousand trials wait here at once
        while self.exit is None:
            if self._waiting:  # another task waits on the pidfd: wait for it (or its cancel)
                if self._waited is None:
                    self._waited = anyio.Event()
                await self._waited.wait()
                continue
            self._waiting = True
            try:
                if self._pidfd is not None:
                    await exited(self._pidfd)
                delay = 0.001
                # no pidfd (a kernel before 5.3, or no descriptor left): poll, as a last resort
                while (exit_ := _try_reap(self.pid)) is None:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.05)
            finally:
                if self._pidfd is not None:
                    unwatch(self._pidfd)
                self._waiting, waited, self._waited = False, self._waited, None
                if waited is not None:
                    waited.set()
            self.exit = exit_
            self._release()
        return self.exit

    def _release(self) -> None:
        """Close the pidfd and tell the backend's handle that the child is gone."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._handle is not None:
            # trio's returncode polls with waitpid: it finds the child reaped (ECHILD), records
            # a status and closes its own pidfd
            _ = self._handle.returncode

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


def _spawn(argv: Sequence[str], options: _Options) -> subprocess.Popen[bytes]:
    """Start the child with the options ``anyio.open_process`` is given on trio."""
    return subprocess.Popen(list(argv), **options)


class _Options(TypedDict):
    stdin: int
    stdout: BinaryIO
    stderr: BinaryIO
    cwd: Path | None
    env: dict[str, str]
    start_new_session: bool


def _options(
    cwd: Path | None, env: Mapping[str, str], stdout: BinaryIO, stderr: BinaryIO
) -> _Options:
    return _Options(
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):  # an old kernel, no descriptor left, or not Linux
        return None


def _try_reap(pid: int) -> Exit | None:
    """Reap ``pid`` if it has exited (``None`` if it has not), with its resource usage."""
    try:
        # never blocks (WNOHANG); the caller waits for the pidfd first
        found, status, rusage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        # reaped by other code of this process (SIGCHLD ignored, a waitpid(-1)): the status is
        # lost; asyncio reports 255 in this case too
        return Exit(255)
    if found == 0:
        return None
    return Exit(os.waitstatus_to_exitcode(status), usage_from(rusage))
