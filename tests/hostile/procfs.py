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
    threads: int
    children: tuple[int, ...]
    zombies: tuple[int, ...]


def snapshot() -> Snapshot:
    """Count this process's open descriptors and OS threads; list its children and zombies."""
    return Snapshot(
        fds=len(os.listdir("/proc/self/fd")),
        threads=_status("Threads"),
        children=tuple(children_of(os.getpid())),
        zombies=tuple(zombie_children()),
    )
