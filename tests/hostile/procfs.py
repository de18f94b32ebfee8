"""What this process holds, read from ``/proc``: descriptors, threads, memory, children, zombies."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..conftest import children_of

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
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == me:
                found.append(int(entry.name))
    return found


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
