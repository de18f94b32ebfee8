"""The consumer's trial files: created per attempt, held while an ended attempt's are read."""

from __future__ import annotations

from typing import BinaryIO

import anyio

from .._errors import TrialFilesError
from .files import prepare_logs
from .offload import Offload
from .plan import Plan

__all__ = ["TrialFiles"]


class TrialFiles:
    """
    Creates each attempt's files, inline or in threads (see :class:`Offload`).

    A working directory whose ended attempt's results are still to be read is *held*: a trial
    with the same files (the same trial queued twice) waits for :meth:`release` before its
    files are made afresh.
    """

    def __init__(self, offload: Offload | None = None) -> None:
        self._offload = offload or Offload()
        self._made_dirs: set[str] = set()
        self._held: dict[str, anyio.Event | None] = {}  # the event made only for a waiter

    async def prepare(self, plan: Plan) -> tuple[BinaryIO, BinaryIO]:
        """
        Create the attempt's files; return its two logs, open for the child.

        Raises:
            TrialFilesError: they could not be created (the host's fault, not the trial's).
        """
        working_dir = plan.paths.text.working_dir
        while working_dir in self._held:  # the same files, still being read
            event = self._held[working_dir]
            if event is None:
                event = self._held[working_dir] = anyio.Event()
            await event.wait()
        paths = plan.paths
        try:
            return await self._offload.run(
                prepare_logs, paths, plan.params_json, plan.config_bytes, self._made_dirs
            )
        except OSError as exc:
            # a full or read-only disk, too many open files: this host's fault, not the trial's
            raise TrialFilesError(paths.text.working_dir, exc) from exc

    def hold(self, working_dir: str) -> None:
        """Keep other attempts out of ``working_dir`` until :meth:`release`."""
        self._held.setdefault(working_dir, None)

    def release(self, working_dir: str) -> None:
        """Let an attempt waiting for ``working_dir`` make its files."""
        event = self._held.pop(working_dir, None)
        if event is not None:
            event.set()
