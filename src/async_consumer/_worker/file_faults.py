"""
Backing off on file faults: a host that cannot create trials' files pauses every lane.

Each trial whose files could not be created is given back (no loss counted: the host, not the
trial, failed), and every lane pauses before it reserves again: 0.5 s, doubling, at most 30 s.
A trial that failed for want of space (``disk_full``) is such a fault too, and any other outcome
shows that the disk is fine again. After ``max_file_faults`` faults in a row the worker gives up.
"""

from __future__ import annotations

import errno
import logging
import os
import random

import anyio

from .._errors import TrialFilesError
from .._models import Lease, Outcome, Reason

__all__ = ["FileFaults"]

logger = logging.getLogger("async_consumer")


class FileFaults:
    """
    Counts a host's file faults in a row, and pauses its lanes after each.

    Args:
        limit: faults in a row before giving up (the worker's ``max_file_faults``).
        backoff: seconds of the first pause (then doubled).
    """

    longest_pause = 30.0
    """Seconds of the longest pause, however many faults came before."""

    def __init__(self, limit: int = 5, backoff: float = 0.5) -> None:
        self.limit = limit
        self.backoff = backoff
        self._in_a_row = 0
        self._paused_until = 0.0
        """No lane reserves before this time (of anyio's clock)."""

    async def wait(self) -> None:
        """Wait out the pause after the last fault, if it is not over."""
        await anyio.sleep(max(0.0, self._paused_until - anyio.current_time()))

    def failed(self, lease: Lease, exc: TrialFilesError, what: str) -> None:
        """
        Count a fault (``exc``, in ``lease``'s trial; ``what`` was done about it); pause the lanes.

        Raises:
            TrialFilesError: ``exc``, when it is the ``limit``-th fault in a row.
        """
        self._in_a_row += 1
        if self._in_a_row >= self.limit:
            raise exc
        delay = min(self.longest_pause, self.backoff * 2.0 ** (self._in_a_row - 1))
        delay *= random.uniform(0.75, 1.25)
        self._paused_until = max(self._paused_until, anyio.current_time() + delay)
        logger.warning(
            "%s; %s, pausing %.1f s (%d/%d)",
            exc,
            what,
            delay,
            self._in_a_row,
            self.limit,
            extra={"trial_id": lease.trial_id},
        )

    def ran(self, lease: Lease, outcome: Outcome) -> None:
        """
        A trial ran (its outcome recorded): the disk is fine again, unless it failed for want of
        space (``disk_full``), a fault like a failure to create its files.

        Raises:
            TrialFilesError: ``limit`` faults in a row.
        """
        if outcome.reason is not Reason.DISK_FULL:
            self._in_a_row = 0
            return
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.failed(lease, TrialFilesError(outcome.working_dir, full), "the trial failed")
