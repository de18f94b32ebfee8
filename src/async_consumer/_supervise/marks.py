"""
The subreaper mode's parts: this process as its descendants' subreaper, a trial's mark, and the
walk that finds, stops, kills and reaps the marked processes that came back to it. The process
tree helpers here (children, signals, a bounded look-again loop) serve the cgroups too.

A trial's mark is the soft limit of ``RLIMIT_LOCKS`` of its processes, set to a number of the
trial's own by a ``/bin/sh`` in front of the command (``ulimit -S -w``). Linux has not enforced
that limit since 2.4.25, so the mark changes nothing for the script; limits are inherited by
every child and kept across ``exec``, whatever environment the new image gets. The environment
is not a safe mark: ``/proc/<pid>/environ`` shows the block a process image started with, and a
daemon that re-executes itself with a cleared environment (``env -i``) drops it. The mark is in
the environment too (``ASYNC_CONSUMER_CONTAINMENT_MARK``), for a script that raises its limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence

import anyio

__all__ = [
    "KILL_BOUND",
    "MARK_ENV",
    "Marked",
    "children",
    "mark_for",
    "reap_ours",
    "signal_all",
    "until",
]

MARK_ENV = "ASYNC_CONSUMER_CONTAINMENT_MARK"
"""The trial's mark in its environment (subreaper mode)."""
KILL_BOUND = 5.0
"""Seconds to wait for a killed trial's processes to be gone (in D state: long)."""
_PR_SET_CHILD_SUBREAPER = 36
_MARK_BASE = 0x4143 << 48  # "AC": above any count of file locks (a limit Linux ignores)
# the mark, then the command
_MARK = 'ulimit -S -w "$1" || exit 125; shift; exec "$@"'


def mark_for(serial: int) -> int:
    """The mark of this process's trial number ``serial``."""
    return _MARK_BASE + ((os.getpid() & 0x3FFFFF) << 24) + (serial & 0xFFFFFF)


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def until(done: Callable[[], bool]) -> None:
    """Look again and again, ever less often, until ``done()`` (the caller bounds the wait)."""
    delay = 0.001
    while not done():
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.05)


_subreaper_holders = 0  # marked trials not yet closed: the flag is held while there are some


def _set_subreaper(on: bool) -> None:
    """Make this process its descendants' subreaper, or no longer (Linux 3.4 and later)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(code)}")


def _hold_subreaper() -> None:
    global _subreaper_holders  # a process-wide property, held by consumers
    if _subreaper_holders == 0:
        _set_subreaper(True)
    _subreaper_holders += 1


def _release_subreaper() -> None:
    global _subreaper_holders
    _subreaper_holders -= 1
    if _subreaper_holders == 0:
        _set_subreaper(False)


def children(pid: int) -> list[int]:
    """The children of ``pid`` (of all its threads), zombies included."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as file:
                found.extend(int(child) for child in file.read().split())
    return found


def _mark_of(pid: int) -> int | None:
    """The mark a process carries: its ``RLIMIT_LOCKS`` soft limit, else its environment's."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/limits") as file:
        for line in file:
            if line.startswith("Max file locks"):
                soft = line[26:].split()[0]
                if soft.isdigit() and int(soft) >= _MARK_BASE:
                    return int(soft)
    prefix = f"{MARK_ENV}=".encode()
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/environ", "rb") as env:
        for item in env.read().split(b"\0"):
            if item.startswith(prefix):
                return int(item[len(prefix) :])
    return None


class Marked:
    """One trial's mark (subreaper mode)."""

    def __init__(self, mark: int, leaders: set[int]) -> None:
        _hold_subreaper()  # from the first marked trial to the end of the last one
        self._holds = True
        self._mark = mark
        self._leaders = leaders  # shared by the consumer's boxes: not looked at for marks
        self._leader: int | None = None

    def traces(self) -> tuple[str, ...]:
        """Its mark, for the watchdog."""
        return (f"m{self._mark}",)

    def started(self, pid: int) -> None:
        """Its script is a child of ours that did not escape: not one to look at."""
        self._leader = pid
        self._leaders.add(pid)

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """``/bin/sh`` sets the mark and execs the command; the environment carries it too."""
        marked = {**env, MARK_ENV: str(self._mark)}
        return ["/bin/sh", "-c", _MARK, "async-consumer", str(self._mark), *argv], marked

    def _escaped(self) -> list[int]:
        """The trial's processes that came back to us, and all their descendants."""
        leaders = self._leaders
        found = [
            pid
            for pid in children(os.getpid())
            if pid not in leaders and _mark_of(pid) == self._mark
        ]
        for pid in found:  # grows as it goes: breadth first
            found.extend(children(pid))
        return found

    def kill_now(self) -> None:
        """SIGKILL the trial's escaped processes now."""
        signal_all(self._escaped(), signal.SIGKILL)

    async def close(self) -> None:
        """Stop every escaped process (so none forks), kill them, reap those that are ours."""
        if self._leader is not None:
            self._leaders.discard(self._leader)
        stopped: set[int] = set()
        try:
            with anyio.move_on_after(KILL_BOUND):
                while found := [pid for pid in self._escaped() if pid not in stopped]:
                    signal_all(found, signal.SIGSTOP)
                    stopped.update(found)
                signal_all(stopped, signal.SIGKILL)
                await until(lambda: not self._reap(stopped))
        finally:
            if self._holds:
                self._holds = False
                _release_subreaper()

    def _reap(self, killed: set[int]) -> bool:
        """Reap our children among the killed (or marked); whether some are left to reap."""
        left = False
        for pid in children(os.getpid()):
            if pid in killed or _mark_of(pid) == self._mark:
                with contextlib.suppress(ChildProcessError):
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    left = left or done == 0
        return left or any(_alive(pid) for pid in killed)


def reap_ours(killed: set[int]) -> None:
    """Reap the killed processes that came back to us (we are a subreaper): none stays a zombie."""
    if not killed:
        return
    for pid in children(os.getpid()):
        if pid in killed:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
