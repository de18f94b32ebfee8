"""
Who holds a lease: ``host/pid/start``, so that a dead holder on this host is seen at once.

A pid alone is not an identity: pids are reused, and a new process with the old number would
look alive for ever. The process's start time (in clock ticks since boot, from ``/proc``) is
part of the name; where it cannot be read (not Linux), the holder is never judged gone from
here, and its leases expire by their heartbeats as before.
"""

from __future__ import annotations

import os

__all__ = ["holder_name", "is_gone", "process_start"]


def process_start(pid: int) -> str | None:
    """The process's start time as ``/proc`` gives it, or ``None`` if it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":  # a zombie: dead, only not reaped yet
        return None
    return fields[19].decode()  # field 22 of stat; the first two were before ")"


def holder_name(host: str, pid: int | None = None) -> str:
    """This process's name as a lease holder (empty where its start time cannot be read)."""
    pid = os.getpid() if pid is None else pid
    start = process_start(pid)
    return "" if start is None else f"{host}/{pid}/{start}"


def is_gone(holder: str, host: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs."""
    parts = holder.rsplit("/", 2)  # a host name has no "/", but split from the right anyway
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return process_start(int(parts[1])) != parts[2]
