"""The ``TrialStore`` protocol every store implements, and the base that closes a store on exit."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self

from .._fleet import WorkerInfo
from .._models import Lease, Outcome, StoredTrial, Trial, TrialStatus

__all__ = ["StoreBase", "TrialStore"]


class TrialStore(Protocol):
    """
    Where trials wait, are leased to workers, and keep every attempt's outcome.

    A lease is fenced by a token that grows with every reservation: ``heartbeat`` and ``finish``
    apply only while the trial is reserved under the lease's token and raise ``LeaseLost``
    otherwise, so a worker presumed dead cannot overwrite its successor's work. Times are taken
    from the store's own clock, never from the caller's.
    """

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials, all or none; return how many were added (see ``DuplicateTrial``)."""
        ...

    async def reserve(self, worker: str, *, host: str = "") -> Lease | None:
        """Lease the oldest new or interrupted trial, or return ``None`` if there is none."""
        ...

    async def heartbeat(self, lease: Lease) -> None:
        """Record that the lease's holder is alive; raise ``LeaseLost`` if it is not current."""
        ...

    async def finish(self, lease: Lease, outcome: Outcome, *, requeue: bool = False) -> TrialStatus:
        """
        Record the attempt's outcome and return the trial's new status (fenced).

        With ``requeue``, the trial goes back to the queue (interrupted) whatever the outcome, to
        be retried as a new attempt; a lost trial still turns broken past ``max_lost``.
        """
        ...

    async def reclaim_stale(self, older_than: float) -> builtins.list[str]:
        """Interrupt reserved trials whose last beat is ``older_than`` seconds old or more."""
        ...

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with all its attempts; raise ``TrialNotFound`` if it is absent."""
        ...

    async def list(self, status: TrialStatus | None = None) -> builtins.list[StoredTrial]:
        """Return the trials (of one status, if given) in the order they were added."""
        ...

    async def counts(self) -> dict[TrialStatus, int]:
        """Return how many trials are in each status (every status is a key)."""
        ...

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """
        Register a worker (``starting``) or record its beat: state, trials running, the time now.

        The store's clock stamps ``beat_at`` (and ``started_at`` when ``starting``); the times
        in ``worker`` are ignored.
        """
        ...

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every worker that registered, the most recently started first."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StoreBase:
    """Makes a store an async context manager that closes itself on exit."""

    async def aclose(self) -> None:
        """Release the store's connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
