"""
A watchdog process that kills a dead consumer's trials.

Trials run in sessions of their own, so when the consumer is killed with SIGKILL (the OOM killer,
``kill -9``, a node's supervisor) nothing stops them: they would run on beside the re-run that
another worker starts once the lease expires. The watchdog is one small process per consumer,
started with a pipe from it. The consumer writes ``+<pgid>`` when a trial's group starts
(with its box's cgroups or mark after tabs, see :mod:`.contain`) and ``-<pgid>`` once it is
gone. When the pipe reaches end of file (the consumer exited, however it died), the watchdog
sends SIGTERM to every group still listed, waits up to the grace period, sends SIGKILL, waits
for them to be gone, kills what is left in their boxes (processes that left the group) and
removes their cgroups, and exits. Until then it keeps a socket of the consumer's open
(:func:`.holder.watchdog_token`): a dead consumer's leases are reclaimed once it has exited. Told when the consumer's leases run out by its clock (:meth:`Watchdog.leases_end`, after
each heartbeat write), it also stops every group then, unless told a later time first: a frozen
consumer's trials do not run on beside their re-runs. It ignores SIGINT and SIGTERM (a Ctrl-C in
the terminal reaches the consumer, which stops its trials itself), and lives in a session of its
own.

The watchdog itself is ``watchdog_main.py``, run by path so that it imports nothing but the
standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .holder import watchdog_token

__all__ = ["Watchdog"]

FORGET_WITHIN = 1.0
"""Seconds a forgotten group may wait to be told with the next registered one."""
PIPE_BYTES = 1 << 20
"""The pipe's capacity asked for: the lines of a hundred thousand trials' starts and ends."""


class Watchdog:
    """The consumer's end of the watchdog: start it, then register and forget process groups."""

    def __init__(self, grace: float) -> None:
        # kept open by the watchdog alone: this process's leases are not reclaimed as a dead
        # holder's while it still ends their trials (holder.is_gone)
        token = watchdog_token(socket.gethostname())
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    str(Path(__file__).with_name("watchdog_main.py")),
                    str(grace),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                pass_fds=() if token is None else (token.fileno(),),
            )
        finally:
            if token is not None:
                token.close()
        assert self._process.stdin is not None  # stdin=PIPE
        self._pipe = self._process.stdin.fileno()
        self._forgotten: list[str] = []  # lines not yet sent: they go with the next one
        self._forgotten_since = 0.0
        # each line is written on the event loop's thread, and a write to a full pipe blocks it
        # until the watchdog reads (ten times a second, a process competing for the same CPUs):
        # ten thousand trials starting together write 80 KB, more than the default 64 KiB
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or over the user's limit
            fcntl.fcntl(self._pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    @property
    def pid(self) -> int:
        """The watchdog's process id."""
        return self._process.pid

    def _send(self, line: str) -> None:
        text, self._forgotten = "".join(self._forgotten) + line, []
        with contextlib.suppress(BrokenPipeError):  # the watchdog is gone: nothing to tell
            os.write(self._pipe, text.encode())

    def leases_end(self, term_at: float, kill_at: float) -> None:
        """
        The consumer's leases run out at ``kill_at`` (``time.monotonic``): unless told a later
        time first, the watchdog sends every group SIGTERM at ``term_at``, SIGKILL at ``kill_at``.
        """
        self._send(f"@{term_at:.3f} {kill_at:.3f}\n")

    def register(self, pgid: int, box: tuple[str, ...] = ()) -> None:
        """
        Watch a process group from now on (told at once, with the groups forgotten since), and
        the trial's box: ``c<directory>`` for each of its cgroups, ``m<mark>`` for its mark.
        """
        self._send("\t".join((f"+{pgid}", *box)) + "\n")

    def forget(self, pgid: int) -> None:
        """
        Stop watching a process group: it is gone.

        Told with the next group registered (one write, not two, a trial), by :meth:`flush`,
        or at once when the oldest group not yet told is over ``FORGET_WITHIN`` old: a group
        id can be reused only after the kernel's process ids wrap around.
        """
        if not self._forgotten:
            self._forgotten_since = time.monotonic()
        self._forgotten.append(f"-{pgid}\n")
        if time.monotonic() - self._forgotten_since > FORGET_WITHIN:
            self.flush()

    def flush(self) -> None:
        """Tell the watchdog of the groups forgotten and not yet told."""
        if self._forgotten:
            self._send("")

    def close(self) -> None:
        """Let the watchdog exit (it kills what is still registered, normally nothing)."""
        self.flush()
        if self._process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=1.0)
