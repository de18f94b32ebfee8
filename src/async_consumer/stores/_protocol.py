"""The ``TrialStore`` protocol every store implements, and the base that closes a store on exit."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

from .._models import Lease, Outcome, StoredTrial, Trial, TrialStatus

__all__ = ["HeldLease", "StoreBase", "TrialStore"]

HeldLease = tuple[str, int, str]
"""A current lease as ``(trial id, token, holder)``; the holder is ``host/pid/start``."""


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

    async def reserve(
        self, worker: str, *, host: str = "", holder: str = "", suspects: bool = True
    ) -> Lease | None:
        """
        Lease the oldest new or interrupted trial, or return ``None`` if there is none.

        ``holder`` names the holding process (see ``HeldLease``); without ``suspects``, trials
        that lost a lease before are passed over (a busy worker leaves them to an idle one).
        """
        ...

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases whose holder starts with ``prefix`` (e.g. ``"host/"``)."""
        ...

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current, each as a loss; return the trials' ids."""
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
