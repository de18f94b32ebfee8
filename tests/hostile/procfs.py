"""What this process holds, read from ``/proc``: descriptors, threads, memory, children, zombies."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..conftest import children_of, process_table

__all__ = ["Snapshot", "rss_bytes", "snapshot", "zombie_children"]


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    msg = f"no {field} in /proc/self/status"
    raise LookupError(msg)


def rss_bytes() -> int:
    """This process's resident set size."""
    return _status("VmRSS") * 1024


def zombie_children() -> list[int]:
    """Children of this process that exited and were never reaped."""
    me = os.getpid()
    return [pid for pid, state, parent in process_table() if state == b"Z" and parent == me]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What this process holds at one moment."""

    fds: int
    threads: frozenset[int]
    """The ids of its OS threads: those of threads that Python does not list too (trio keeps
    idle worker threads for a while, started below ``threading``)."""
    children: tuple[int, ...]
    zombies: tuple[int, ...]


def snapshot() -> Snapshot:
    """Count this process's open descriptors; list its OS threads, children and zombies."""
    return Snapshot(
        fds=len(os.listdir("/proc/self/fd")),
        threads=frozenset(int(tid) for tid in os.listdir("/proc/self/task")),
        children=tuple(children_of(os.getpid())),
        zombies=tuple(zombie_children()),
    )
