"""
Who holds a lease: ``host/pid/start``, so that a dead holder on this host is seen at once.

A pid alone is not an identity: pids are reused, and a new process with the old number would
look alive for ever. The process's start time (in clock ticks since boot, from ``/proc``) is
part of the name; where it cannot be read (not Linux), the holder is never judged gone from
here, and its leases expire by their heartbeats as before.

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

__all__ = ["holder_name", "is_gone", "process_start", "watchdog_token"]


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
    """
    Whether ``holder`` names a process of this host that no longer runs, and whose watchdog
    (still ending its trials' processes) has exited too.
    """
    parts = holder.rsplit("/", 2)  # a host name has no "/", but split from the right anyway
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return process_start(int(parts[1])) != parts[2] and not _has_watchdog(holder)


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
