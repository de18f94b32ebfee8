"""
A lost attempt's run left on this host: noted when it starts, ended by the trial's re-run.

A trial's lease can move on while its run still goes: its worker frozen (SIGSTOP, a debugger)
past the lease, or killed while its watchdog is still stopping the run, or too slow to learn
that its lease was taken. Each leased run therefore notes, in its attempt's directory, where it
runs (:data:`RUN_FILE`: host, the leader's pid and start time, its box's traces), and removes
the note once its processes are gone. Before a re-run of the trial starts, it looks at the
earlier attempts' notes: a run of this host that is still there is ended (SIGTERM, the grace,
SIGKILL, its box emptied) and waited for. So on one host a trial's old run never runs beside its
successor, whatever the watchdog's timing. A successor on another host cannot act: there, the
old host's watchdog (which stops a frozen worker's trials before their leases run out) is the
guard, and a dead worker's leases are reclaimed only once its watchdog has exited.

The pid alone is not the run's identity (pids are reused): its start time is noted too, and a
group is signalled only if its leader is that process (a zombie counts: a frozen worker has not
reaped it), or no process has its pid any more (a group outlives its leader; a pid still used as
a group's id is never given to a new process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import anyio.to_thread

from .._trial.paths import ATTEMPTS
from .watchdog_main import end_runs, marked, running_groups

__all__ = ["RUN_FILE", "end_left_runs", "forget_run", "note_run"]

logger = logging.getLogger("async_consumer")

RUN_FILE = "run.json"
"""In a leased attempt's directory while its processes may run: where they run."""


def note_run(attempt_dir: str, host: str, pid: int, box: Sequence[str]) -> str | None:
    """
    Note a leased attempt's run, started as ``pid`` in ``box`` (its traces); the note's path,
    for :func:`forget_run` (``None``: it could not be written, and costs nothing).
    """
    start = _start_of(pid)
    if start is None:  # gone already, or not Linux: nothing a successor could check
        return None
    path = os.path.join(attempt_dir, RUN_FILE)
    text = json.dumps({"host": host, "pid": pid, "start": start, "box": list(box)})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError:
        return None
    try:
        os.write(fd, text.encode())
    except OSError:
        return None
    finally:
        os.close(fd)
    return path


def forget_run(path: str | None) -> None:
    """The noted run's processes are gone: remove its note."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass(frozen=True, slots=True)
class _Run:
    path: str
    attempt: int
    pid: int
    start: str
    box: list[str]

    def owns_group(self) -> bool:
        """Whether the group ``pid`` is still this run's (see the module's docstring)."""
        start = _start_of(self.pid)
        return start is None or start == self.start

    def is_running(self) -> bool:
        """Whether any of its processes still runs: its group, its cgroup's or mark's."""
        if self.owns_group() and running_groups({self.pid}):
            return True
        if any(_cgroup_members(trace[1:]) for trace in self.box if trace[:1] == "c"):
            return True
        marks = {int(trace[1:]) for trace in self.box if trace[:1] == "m" and trace[1:].isdigit()}
        return bool(marks) and bool(marked(marks))  # one look at /proc: only a dead run's note


async def end_left_runs(
    trial_id: str, working_dir: str, attempt: int, host: str, grace: float
) -> list[int]:
    """
    End the runs of a trial's earlier attempts (before ``attempt``) still there on ``host``:
    SIGTERM, up to ``grace`` seconds, SIGKILL, their boxes emptied; once they are gone, their
    notes are removed. The attempts whose runs were still running.
    """
    runs = [
        run for number in range(attempt - 1, 0, -1) if (run := _read(working_dir, number, host))
    ]
    if not runs:
        return []
    running = [run for run in runs if run.is_running()]
    if running:
        groups = {run.pid for run in running if run.owns_group()}
        boxes = [run.box for run in running if run.box]
        attempts = ", ".join(f"{run.attempt} (pid {run.pid})" for run in running)
        logger.warning(
            "the run of its earlier attempt %s still runs here: ending it before this one starts",
            attempts,
            extra={"trial_id": trial_id},
        )
        # a thread: the same steps as the watchdog's, which wait with sleeps (a rare case)
        await anyio.to_thread.run_sync(end_runs, groups, boxes, grace)
    for run in runs:
        if not run.is_running():
            forget_run(run.path)
    return [run.attempt for run in running]


def _read(working_dir: str, attempt: int, host: str) -> _Run | None:
    """The note of an attempt's run on ``host``, if there is one."""
    path = os.path.join(working_dir, ATTEMPTS, str(attempt), RUN_FILE)
    try:
        with open(path, "rb") as file:
            note = json.loads(file.read(65536))
        if note["host"] != host:
            return None  # another host's run: its watchdog's business
        box = [str(trace) for trace in note.get("box", ())]
        return _Run(path, attempt, int(note["pid"]), str(note["start"]), box)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none (the run ended, or never started here), or cut short


def _start_of(pid: int) -> str | None:
    """A process's start time (in clock ticks since boot), zombies too; ``None``: no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _cgroup_members(directory: str) -> list[str]:
    try:
        with open(os.path.join(directory, "cgroup.procs")) as procs:
            return procs.read().split()
    except OSError:
        return []
