"""
Suspects run alone: a trial that may have killed its worker is not run beside healthy ones.

A *suspect* is a trial that lost a lease before: its worker may have died of it. Only a worker
with nothing else running reserves one (:class:`.lanes.Leasing` lets the store hand out a suspect
only when it holds no lease), and it reserves nothing more while the suspect runs, so that if the
suspect kills this worker no healthy trial is lost with it, and the death is charged to the
suspect alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from .._models import Lease

__all__ = ["Alone"]


class Alone:
    """Holds a worker's reservations back while a suspect runs alone on it."""

    def __init__(self) -> None:
        self._ended: anyio.Event | None = None
        """Set when the suspect running alone has ended; ``None`` while none runs."""

    async def wait(self) -> None:
        """Wait until no suspect runs on this worker."""
        while self._ended is not None:
            await self._ended.wait()

    def reserved(self, leases: Sequence[Lease]) -> None:
        """Leases were reserved: a suspect among them (it comes alone) now runs alone."""
        if leases and leases[0].lost_count:
            self._ended = anyio.Event()

    def done(self, lease: Lease) -> None:
        """The lease's attempt has ended: if it was the suspect's, reservations go on."""
        if lease.lost_count and self._ended is not None:
            self._ended.set()
            self._ended = None
