"""
The watchdog process (see ``_watchdog.py``): kill the listed process groups once stdin closes.

Reads ``+<pgid>`` and ``-<pgid>`` lines; at end of file, SIGTERM to every group still listed,
the grace period, SIGKILL. Standard library only: it is started by path, not as a module of
the package, so it costs no imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


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


def _main(grace: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    _kill_groups(groups, grace)


if __name__ == "__main__":
    _main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
