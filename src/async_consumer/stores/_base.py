"""The ``TrialStore`` protocol, the rules every store shares, and opening a store from a URL."""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Protocol, Self

from .._models import Attempt, Lease, Outcome, Reason, Status, StoredTrial, Trial, TrialStatus

_ATTEMPT_FIELDS = ("number", "token", "worker", "host", "reserved_at", "heartbeat_at", "outcome")
_STORED_FIELDS = ("trial", "status", "token", "worker", "heartbeat_at", "lost_count")
PENDING = (TrialStatus.NEW, TrialStatus.INTERRUPTED)
"""The statuses ``reserve`` takes trials from."""

DEFAULT_MAX_LOST = 2
"""A trial is broken at its third lost lease: as a suspect runs alone after its first, a healthy
trial loses a lease to a neighbour's crash at most once, and a poison trial that kills every
worker it runs on is stopped after three deaths."""

HeldLease = tuple[str, int, str]
"""A current lease as ``(trial id, token, holder)``; the holder is ``host/pid/start``."""

_SETTLED = {
    Status.COMPLETED: TrialStatus.COMPLETED,
    Status.BROKEN: TrialStatus.BROKEN,
    Status.INTERRUPTED: TrialStatus.INTERRUPTED,
    Status.LOST: TrialStatus.INTERRUPTED,
}


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


def check_max_lost(max_lost: int) -> int:
    """Return ``max_lost`` if it is a count, else raise ``ValueError``."""
    if max_lost < 0:
        msg = f"max_lost must be 0 or more, not {max_lost}"
        raise ValueError(msg)
    return max_lost


def check_older_than(older_than: float) -> float:
    """Return ``older_than`` if it is a duration, else raise ``ValueError``."""
    if not older_than >= 0:
        msg = f"older_than must be 0 or more seconds, not {older_than}"
        raise ValueError(msg)
    return older_than


def check_outcome(lease: Lease, outcome: Outcome) -> None:
    """Raise ``ValueError`` if the outcome belongs to another trial than the lease."""
    if outcome.trial_id != lease.trial_id:
        msg = f"outcome of trial {outcome.trial_id!r} given for lease on {lease.trial_id!r}"
        raise ValueError(msg)


def settled_status(status: Status, requeue: bool = False) -> TrialStatus:
    """The trial's status after an attempt ends so, before counting losses against ``max_lost``."""
    return TrialStatus.INTERRUPTED if requeue else _SETTLED[status]


def settle(
    status: Status, lost_count: int, max_lost: int, requeue: bool = False
) -> tuple[TrialStatus, int]:
    """Return the trial's new status and lost count once an attempt ended with ``status``."""
    if status is not Status.LOST:
        return settled_status(status, requeue), lost_count
    lost_count += 1
    return (TrialStatus.BROKEN if lost_count > max_lost else TrialStatus.INTERRUPTED), lost_count


def lost_outcome(trial_id: str, attempt: int, older_than: float) -> Outcome:
    """The outcome recorded on an attempt whose lease the store reclaimed."""
    message = f"no heartbeat for {older_than:g} s or more; the store reclaimed the lease"
    return Outcome(
        trial_id=trial_id,
        attempt=attempt,
        status=Status.LOST,
        reason=Reason.LEASE_LOST,
        message=message,
    )


def gone_outcome(trial_id: str, attempt: int, message: str) -> Outcome:
    """The outcome recorded on an attempt whose holding process is known to be gone."""
    return Outcome(
        trial_id=trial_id,
        attempt=attempt,
        status=Status.LOST,
        reason=Reason.LEASE_LOST,
        message=message,
    )


def dump_trial(trial: Trial) -> str:
    """The JSON text a store keeps for a trial (the attempt number is the store's to count)."""
    return trial.model_dump_json(exclude={"attempt"})


def load_trial(text: str, attempts: int) -> Trial:
    """Rebuild a stored trial, numbered with its latest attempt."""
    trial = Trial.model_validate_json(text)
    return trial.model_copy(update={"attempt": max(attempts, 1)})


def same_params(stored: str, trial: Trial) -> bool:
    """Whether a stored trial's JSON text has the same parameters as ``trial``."""
    params: object = json.loads(stored)["params"]
    return params == trial.params


def load_attempt(row: Sequence[object]) -> Attempt:
    """Rebuild an attempt from a row (times as datetimes or seconds since the epoch)."""
    fields = dict(zip(_ATTEMPT_FIELDS, row, strict=True))
    if isinstance(fields["outcome"], str):
        fields["outcome"] = Outcome.model_validate_json(fields["outcome"])
    return Attempt.model_validate(fields)


def load_stored(row: Sequence[object], attempts: Sequence[Attempt]) -> StoredTrial:
    """Rebuild a stored trial from a row (its JSON text first) and its attempts in order."""
    fields = dict(zip(_STORED_FIELDS, row, strict=True))
    fields["trial"] = load_trial(str(fields["trial"]), len(attempts))
    return StoredTrial.model_validate({**fields, "attempts": tuple(attempts)})


def zero_counts() -> dict[TrialStatus, int]:
    """A count of 0 for every status."""
    return dict.fromkeys(TrialStatus, 0)


async def open_store(url: str, *, max_lost: int = DEFAULT_MAX_LOST) -> TrialStore:
    """
    Open the store a URL names; the caller must close it (``aclose`` or ``async with``).

    Args:
        url: ``memory:``, ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or
            ``postgresql://user@host:port/database`` (optionally ``?schema=name``).
        max_lost: how many times a trial may lose its lease before it is marked broken.

    Raises:
        ValueError: the URL's scheme is not one of these.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(max_lost=max_lost)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore, path_from_url

        return SQLiteStore(path_from_url(url), max_lost=max_lost)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return await PostgresStore.open(url, max_lost=max_lost)
    msg = f"unknown store URL scheme {scheme!r}: expected memory:, sqlite:/// or postgresql://"
    raise ValueError(msg)


@asynccontextmanager
async def store_from_url(
    url: str, *, max_lost: int = DEFAULT_MAX_LOST
) -> AsyncIterator[TrialStore]:
    """
    Open the store a URL names for the duration of an ``async with`` block.

    Takes the same arguments as :func:`open_store`.
    """
    store = await open_store(url, max_lost=max_lost)
    async with store:
        yield store
