"""
The watchdog process (see ``_watchdog.py``): kill the listed process groups once stdin closes.

Reads ``+<pgid>`` and ``-<pgid>`` lines; at end of file, SIGTERM to every group still listed,
the grace period, SIGKILL. Standard library only: it is started by path, not as a module of
the package, so it costs no imports.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

POLL = 0.1
"""Seconds between two looks at the pipe for the lines written since the last."""


def _kill_groups(groups: set[int], grace: float) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {pgid for pgid in groups if _exists(pgid)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _main(grace: float = 5.0, poll: float = POLL) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    os.set_blocking(0, False)
    hangup = select.poll()
    hangup.register(0, 0)  # no event asked for: only the pipe's hang-up (or an error) wakes it
    pending = b""
    while (chunk := _read_when_due(0, hangup, poll)) is not None:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    _kill_groups(groups, grace)


def _read_when_due(fd: int, hangup: select.poll, poll: float) -> bytes | None:
    """
    What the pipe holds (``None`` at end of file), looked at every ``poll`` seconds, and at
    once when the consumer's end closes (it exited, or died).

    Never waiting for the pipe to be readable: a write by the consumer then wakes nobody, so it
    costs the consumer a copy, not a switch to this process for every trial started (a thousand
    starting together on two cores). The hang-up wakes it: a consumer that exits is not kept
    waiting for the next look (a tenth of a second on every run of the command).
    """
    while True:
        try:
            return os.read(fd, 65536) or None
        except BlockingIOError:
            hangup.poll(poll * 1000)


if __name__ == "__main__":
    # arguments: the grace period, and (for tests) the seconds between two looks at the pipe
    _main(*(float(arg) for arg in sys.argv[1:3]))
