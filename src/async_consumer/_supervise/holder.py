"""
Who holds a lease: ``host/pid/start``, so that a dead holder on this host is seen at once.

A pid alone is not an identity: pids are reused, and a new process with the old number would
look alive for ever. The process's start time (in clock ticks since boot, from ``/proc``) is
part of the name; where it cannot be read (not Linux), the holder is never judged gone from
here, and its leases expire by their heartbeats as before. A holder of this host that is not
gone either runs (:func:`is_running`: a worker that is slow to beat, but will learn of a lost
lease and stop its own trials) or is stopped (SIGSTOP, a debugger: it cannot).

A holder's watchdog (:mod:`.watchdog`) outlives it to end its trials' processes: while it runs,
it keeps a socket bound to a name of the holder's (Linux's abstract namespace: nothing on disk,
gone with the last process that has it open), and the holder is not gone yet. Its leases are
then not handed out at once: another host's worker could start a trial beside its old run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket

__all__ = ["holder_name", "is_gone", "is_running", "process_start", "watchdog_token"]


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
    """
    Whether ``holder`` names a process of this host that no longer runs, and whose watchdog
    (still ending its trials' processes) has exited too.
    """
    pid = _local_pid(holder, host)
    if pid is None or process_start(pid) == holder.rsplit("/", 1)[1]:
        return False
    return not _has_watchdog(holder)


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


def _address(holder: str) -> bytes:
    """The abstract socket name a holder's watchdog keeps bound (a hash: names are short)."""
    return b"\0async-consumer-watchdog-" + hashlib.sha256(holder.encode()).hexdigest()[:32].encode()


def watchdog_token(host: str) -> socket.socket | None:
    """
    A socket bound to this process's watchdog name, for its watchdog to inherit and keep open
    (``None``: not Linux, or no holder name here). The caller closes its own copy.
    """
    holder = holder_name(host)
    if not holder:
        return None
    token = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        token.bind(_address(holder))
    except OSError:  # not Linux (no abstract names), or another watchdog of ours has it
        token.close()
        return None
    return token


def _has_watchdog(holder: str) -> bool:
    """Whether a socket is bound to ``holder``'s watchdog name (its watchdog still runs)."""
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe,
    ):
        probe.connect(_address(holder))
        return True
    return False
