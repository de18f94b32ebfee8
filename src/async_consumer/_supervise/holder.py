"""
Who holds a lease: ``host/pid/start``, so that a dead holder on this host is seen at once.

A pid alone is not an identity: pids are reused, and a new process with the old number would
look alive for ever. The process's start time (in clock ticks since boot, from ``/proc``) is
part of the name; where it cannot be read (not Linux), the holder is never judged gone from
here, and its leases expire by their heartbeats as before. A holder of this host that is not
gone either runs (:func:`is_running`: a worker that is slow to beat, but will learn of a lost
lease and stop its own trials) or is stopped (SIGSTOP, a debugger: it cannot).
"""

from __future__ import annotations

import os

__all__ = ["holder_name", "is_gone", "is_running", "process_start"]


def process_start(pid: int) -> str | None:
    """The process's start time as ``/proc`` gives it, or ``None`` if it is gone or unknown."""
    found = _state_and_start(pid)
    return None if found is None else found[1]


def _state_and_start(pid: int) -> tuple[bytes, str] | None:
    """The process's state letter and start time (``/proc/<pid>/stat``); ``None``: gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        state, start = fields[0], fields[19].decode()  # field 22 of stat: two were before ")"
    except (OSError, IndexError):
        return None
    if state in (b"Z", b"X"):  # a zombie: dead, only not reaped yet
        return None
    return state, start


def holder_name(host: str, pid: int | None = None) -> str:
    """This process's name as a lease holder (empty where its start time cannot be read)."""
    pid = os.getpid() if pid is None else pid
    start = process_start(pid)
    return "" if start is None else f"{host}/{pid}/{start}"


def is_gone(holder: str, host: str) -> bool:
    """Whether ``holder`` names a process of this host that no longer runs."""
    pid = _local_pid(holder, host)
    return pid is not None and process_start(pid) != holder.rsplit("/", 1)[1]


def is_running(holder: str, host: str) -> bool:
    """
    Whether ``holder`` names a process of this host that still runs and is not stopped
    (``T``: SIGSTOP; ``t``: a debugger): it is alive, however slowly it gets the CPU.
    """
    pid = _local_pid(holder, host)
    found = None if pid is None else _state_and_start(pid)
    return found is not None and found[1] == holder.rsplit("/", 1)[1] and found[0] not in b"Tt"


def _local_pid(holder: str, host: str) -> int | None:
    """The pid in ``holder`` if it names a process of this host (else ``None``)."""
    parts = holder.rsplit("/", 2)  # a host name has no "/", but split from the right anyway
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return None
    return int(parts[1])
