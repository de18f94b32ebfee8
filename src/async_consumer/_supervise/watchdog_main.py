"""
The watchdog process (see ``watchdog.py``): kill the listed process groups once stdin closes,
or once the consumer's leases run out.

Reads ``+<pgid>`` and ``-<pgid>`` lines; at end of file, SIGTERM to every group still listed,
the grace period, SIGKILL, and a bounded wait until they are gone. A ``+`` line may name the trial's box after tabs: ``c<directory>``
for each of its cgroups, ``m<mark>`` for its mark (subreaper mode); what is in a box still listed
is killed too (a process that left the group), and its cgroups removed. A line ``@<term> <kill>``
(``time.monotonic`` seconds, the same clock in every process of the machine) says when the
consumer's leases run out by its clock: if no later line comes first and the consumer is frozen
(stopped: SIGSTOP, a debugger), every group listed gets SIGTERM at ``term`` and SIGKILL at
``kill``, before any other worker may take their trials. A consumer that runs, however slowly,
stops its own trials when it learns that their leases are lost: a busy event loop must not cost
healthy trials. Standard library only: it is started by path, not as a module of the package,
so it costs no imports.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import select
import signal
import sys
import time

POLL = 0.1
"""Seconds between two looks at the pipe for the lines written since the last."""


def end_runs(groups: set[int], boxes: list[list[str]], grace: float) -> None:
    """
    End trials' runs: SIGTERM to every group, up to ``grace`` seconds for them to be gone,
    SIGKILL, a bounded wait until they are gone (a process killed in the middle of a write may
    still finish it), then kill what is in their boxes. Also what a trial's re-run calls for the
    run of its lost attempt left on this host (:mod:`.leftover`).
    """
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    groups = _wait_gone(groups, grace)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _wait_gone(groups, KILL_BOUND)
    _kill_boxes(boxes)


KILL_BOUND = 5.0
"""Seconds to wait for SIGKILLed processes to be gone (in D state: long)."""


def _wait_gone(groups: set[int], bound: float) -> set[int]:
    """Wait up to ``bound`` seconds for the groups to be gone; those still running."""
    deadline = time.monotonic() + bound
    groups = running_groups(groups)
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = running_groups(groups)
    return groups


def running_groups(groups: set[int]) -> set[int]:
    """
    Those of ``groups`` that have a running member: zombies count as dead (an orphan's parent,
    PID 1 in a container, or a frozen worker, may never reap it). One look at ``/proc`` for all.
    """
    groups = {pgid for pgid in groups if _exists(pgid)}
    if not groups:
        return groups
    running = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                if fields[0] != b"Z" and int(fields[2]) in groups:
                    running.add(int(fields[2]))
    return running


def _members(directory: pathlib.Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _kill_cgroup(directories: list[pathlib.Path]) -> None:
    """Kill everything in a trial's cgroup (v2: cgroup.kill; v1: frozen first) and remove it."""
    deadline = time.monotonic() + 5.0
    while any(_members(d) for d in directories) and time.monotonic() < deadline:
        for directory in directories:
            with contextlib.suppress(OSError):
                if (directory / "cgroup.kill").exists():
                    (directory / "cgroup.kill").write_text("1")
                elif (directory / "freezer.state").exists():
                    _freeze_and_kill(directory)
                else:
                    _kill_all(_members(directory))
        time.sleep(0.01)
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def _freeze_and_kill(directory: pathlib.Path) -> None:
    state = directory / "freezer.state"
    state.write_text("FROZEN")
    try:
        deadline = time.monotonic() + 1.0
        while state.read_text().strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.001)
        _kill_all(_members(directory))
    finally:
        state.write_text("THAWED")


def _kill_all(pids: list[int], sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def marked(marks: set[int]) -> list[int]:
    """The processes whose soft RLIMIT_LOCKS is one of ``marks`` (a trial's mark)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{name}/limits") as limits,
        ):
            for line in limits:
                if line.startswith("Max file locks"):
                    soft = line[26:].split()[0]
                    if soft.isdigit() and int(soft) in marks:
                        found.append(int(name))
                    break
    return found


def _kill_marked(marks: set[int]) -> None:
    """Stop every marked process until none is new (none forks meanwhile), then kill them."""
    stopped: set[int] = set()
    deadline = time.monotonic() + 5.0
    while (found := set(marked(marks)) - stopped) and time.monotonic() < deadline:
        _kill_all(list(found), signal.SIGSTOP)
        stopped |= found
    _kill_all(list(stopped))


def _kill_boxes(boxes: list[list[str]]) -> None:
    marks = {int(trace[1:]) for box in boxes for trace in box if trace[:1] == "m"}
    if marks:
        _kill_marked(marks)
    for box in boxes:
        cgroup = [pathlib.Path(trace[1:]) for trace in box if trace[:1] == "c"]
        if cgroup:
            _kill_cgroup(cgroup)


def _exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _main(grace: float = 5.0, poll: float = POLL) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: dict[int, list[str]] = {}  # pgid -> its box's traces
    os.set_blocking(0, False)
    hangup = select.poll()
    hangup.register(0, 0)  # no event asked for: only the pipe's hang-up (or an error) wakes it
    pending = b""
    leases = _Leases()
    while (chunk := _read_when_due(0, hangup, leases.wait(poll))) is not None:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                pgid, *box = os.fsdecode(line[1:]).split("\t")
                groups[int(pgid)] = box
            elif line[:1] == b"-":
                groups.pop(int(line[1:]), None)
            elif line[:1] == b"@":
                term, kill = line[1:].split()
                leases.renewed(float(term), float(kill))
        leases.enforce(set(groups))
    end_runs(set(groups), [box for box in groups.values() if box], grace)


class _Leases:
    """When the consumer's leases run out by its clock, and the signals sent for it so far."""

    def __init__(self) -> None:
        self.term_at = self.kill_at = math.inf
        self.sent: dict[int, int] = {}  # pgid -> the last signal sent for the leases' end

    def renewed(self, term_at: float, kill_at: float) -> None:
        self.term_at = term_at
        self.kill_at = kill_at
        self.sent.clear()

    def wait(self, poll: float) -> float:
        """Seconds until the next look: ``poll``, or less when a signal falls due sooner."""
        due = self.kill_at if self.sent else self.term_at
        return max(0.0, min(poll, due - time.monotonic()))

    def enforce(self, groups: set[int]) -> None:
        """Signal every group listed once the leases have run out (SIGTERM, then SIGKILL)."""
        now = time.monotonic()
        if now < self.term_at or not groups or not _is_stopped(os.getppid()):
            return
        sig = signal.SIGKILL if now >= self.kill_at else signal.SIGTERM
        for pgid in groups:
            if self.sent.get(pgid) != sig:
                self.sent[pgid] = sig
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)


def _is_stopped(pid: int) -> bool:
    """Whether the process is stopped (``T``: SIGSTOP; ``t``: a debugger), as /proc says."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


def _read_when_due(fd: int, hangup: select.poll, poll: float) -> bytes | None:
    """
    What the pipe holds (``None`` at end of file; empty after ``poll`` seconds with nothing),
    looked at every ``poll`` seconds, and at once when the consumer's end closes (it exited,
    or died).

    Never waiting for the pipe to be readable: a write by the consumer then wakes nobody, so it
    costs the consumer a copy, not a switch to this process for every trial started (a thousand
    starting together on two cores). The hang-up wakes it: a consumer that exits is not kept
    waiting for the next look (a tenth of a second on every run of the command).
    """
    try:
        return os.read(fd, 65536) or None
    except BlockingIOError:
        hangup.poll(poll * 1000)
    try:
        return os.read(fd, 65536) or None
    except BlockingIOError:
        return b""


if __name__ == "__main__":
    # arguments: the grace period, and (for tests) the seconds between two looks at the pipe
    _main(*(float(arg) for arg in sys.argv[1:3]))
