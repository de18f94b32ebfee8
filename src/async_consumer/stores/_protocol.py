"""The ``TrialStore`` protocol every store implements, and the base that closes a store on exit."""

from __future__ import annotations

import abc
import builtins
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self, runtime_checkable

from .._errors import LeaseLost
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Lease, Outcome, StoredTrial, Trial, TrialStatus
from ._rules import check_finishes

__all__ = [
    "Finish",
    "HeldLease",
    "IntermediateValue",
    "Reservation",
    "StaleLook",
    "StoreBase",
    "TimedReclaim",
    "TrialStore",
]

HeldLease = tuple[str, int, str]
"""A current lease as ``(trial id, token, holder)``; the holder is ``host/pid/start``."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """
    What a reservation asks of the store, passed unchanged through every layer to the store.

    Args:
        host: the host the attempt runs on, recorded with it.
        skip: ids of trials to pass over. The store reads it when it reserves, so a caller may
            keep adding to the collection it gave.
        hold: whether a trial held back by ``finish(..., hold=)`` is passed over until its time
            comes; false for a researcher's explicit rerun.
        holder: the holding process, ``host/pid/process-start`` (see ``HeldLease``).
        suspects: whether a suspect (a trial that lost a lease before) may be reserved; a
            worker already running one leaves the others to other workers.
    """

    host: str = ""
    skip: Collection[str] = ()
    hold: bool = True
    holder: str = ""
    suspects: bool = True


class Finish(NamedTuple):
    """One attempt's end in a ``finish_many`` batch: the arguments of one ``finish`` call."""

    lease: Lease
    outcome: Outcome
    requeue: bool = False
    hold: float = 0.0


class IntermediateValue(NamedTuple):
    """A trial's objective at one step of its script, as a pruner judges it."""

    trial_id: str
    step: int
    value: float


class StaleLook(NamedTuple):
    """What one ``reclaim_stale_timed`` did, and when the next lease it might take falls stale."""

    reclaimed: builtins.list[str]
    next_in: float | None
    """Seconds (by the store's clock) until the oldest lease it left, not spared and not held
    by a ``running`` holder, is ``older_than`` old; ``None``: no such lease, or not known."""


VALUES_PAGE = 1000
"""How many intermediate values ``read_values`` returns at most, by default."""


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

    async def reserve(self, worker: str, request: Reservation = Reservation()) -> Lease | None:
        """
        Lease the oldest new or interrupted trial that ``request`` allows, or return ``None``
        if there is none: a batch of one (see ``reserve_many``).
        """
        ...

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """
        Lease up to ``n`` trials in one transaction, the oldest first, each with its own token
        and a new attempt; fewer (or none) when fewer are waiting. ``n`` below 1 is a
        ``ValueError``.

        Trials in ``request.skip`` are passed over; so is a trial held back by
        ``finish(..., hold=)`` until its time comes, unless ``request.hold`` is false, and,
        without ``request.suspects``, a trial that lost a lease before.
        """
        ...

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases whose holder starts with ``prefix`` (e.g. ``"host/"``)."""
        ...

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """
        Interrupt these leases if still current, each as a loss; return the trials' ids.

        A suspect's loss (a trial that lost a lease before) is excused, its attempt recorded
        interrupted, when another worker (one that never ran the trial) lost a lease to a reclaim
        since the trial's previous attempt began: deaths all around are no evidence against it.
        """
        ...

    async def heartbeat(self, lease: Lease) -> None:
        """Record that the lease's holder is alive; raise ``LeaseLost`` if it is not current."""
        ...

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """
        Renew, in one transaction, each lease that is still current; return the others' ids.

        Each lease is checked against its own token, as ``heartbeat`` does, but a lease that is
        no longer current is reported (its trial's id, in the order given) instead of raising
        ``LeaseLost``: the other leases of the call are renewed all the same.
        """
        ...

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """
        Record the attempt's outcome and return the trial's new status (fenced).

        With ``requeue``, the trial goes back to the queue (interrupted) whatever the outcome, to
        be retried as a new attempt; a lost trial still turns broken past ``max_lost``. With
        ``hold`` seconds, ``reserve`` passes the trial over until then (by the store's clock).
        """
        ...

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """
        Record several outcomes in one transaction (a group commit), each as ``finish`` would.

        Each item is fenced on its own: one whose lease is no longer current gets a
        ``LeaseLost`` in its place of the answer, and the others are recorded all the same.
        Arguments are checked before anything is written (``ValueError``).
        """
        ...

    async def unreserve(self, lease: Lease) -> bool:
        """
        Undo a reservation whose attempt never started, if the lease is still current: the
        trial is pending again, and its attempt number (the token) is given back, the attempt
        gone from its record. ``False``: the lease had moved on, nothing changed.
        """
        ...

    async def reclaim_stale(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> builtins.list[str]:
        """
        Interrupt reserved trials whose last beat is ``older_than`` seconds old or more.

        Leases whose holder is ``spare`` (when given) are left alone: a worker never reclaims
        what it runs itself. Those whose holder is among ``alive`` (a process known to still
        run: frozen or overloaded, not dead) are interrupted without counting a loss: the
        trial did not kill its worker. Those whose holder is among ``running`` (a process of
        the caller's host that runs and is not stopped: late to beat on a loaded machine, it
        will learn that a lease is lost and stop its trial itself) are left to it until their
        last beat is ``wedged`` seconds old (never, by default): it is then taken to be wedged.
        A suspect's loss is excused as in ``reclaim_leases``.
        """
        ...

    async def clear_losses(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """
        Clear the loss counted against each lease's attempt, its holder having come back.

        A holder calls this with a lease of its own that the store refused (``LeaseLost``):
        it still runs, so it was frozen or cut off, not killed, and a loss recorded on that
        attempt when the store reclaimed it is no evidence against the trial. Each attempt
        (the lease's trial, number and worker; never a later one) whose outcome is lost is
        rewritten as interrupted, its trial's ``lost_count`` loses one, and a trial that its
        losses had made broken is interrupted again (back in the queue) if its count is within
        ``max_lost`` once more. Return the ids of the trials whose loss was cleared; an
        attempt not lost (still running, cleared already, ended otherwise) is left as it is.
        """
        ...

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with all its attempts; raise ``TrialNotFound`` if it is absent."""
        ...

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """
        Return the trials (of one status, if given) in the order they were added.

        ``offset`` and ``limit`` give one page of that list: a caller reads a large store page
        by page rather than holding every trial at once.
        """
        ...

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials (of ``ids``, if given) are in each status (all are keys)."""
        ...

    async def best(self, *, maximize: bool = False) -> StoredTrial | None:
        """
        Return the completed trial with the lowest objective (the highest with ``maximize``),
        the first added of equals, or ``None``: what ``best_trial`` picks from
        ``list(TrialStatus.COMPLETED)``, without reading every completed trial's outcome.
        """
        ...

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """
        Make the trials of ``ids`` that are in one of ``statuses`` new again; return how many.

        Their attempts are kept; the next reservation is a new attempt with the next number.
        Only ``broken`` and ``interrupted`` trials can be run again this way.
        """
        ...

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """
        Record intermediate values, all in one write; a trial's value at a step already
        recorded is kept (the first one counts), the new one dropped.

        Args:
            values: the values.
            tokens: for a trial id, the token of the lease its values were reported under:
                they are kept only if the trial is still reserved under that token (a stale
                holder's late values are dropped, as its outcome would be refused). The values
                of a trial not in ``tokens`` are not fenced.
        """
        ...

    async def read_values(
        self, after: int = 0, *, limit: int = VALUES_PAGE
    ) -> tuple[builtins.list[IntermediateValue], int]:
        """
        The intermediate values recorded after the cursor ``after`` (0: from the first), in
        the order they were recorded, at most ``limit``; with the cursor to read on from.

        Every value is read once by a reader that reads on from the cursor it was given: none
        committed later can come before it.
        """
        ...

    async def experiment(self, name: str) -> Experiment | None:
        """Return the latest recorded version of an experiment, or ``None``."""
        ...

    async def add_experiment(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """
        Record a version of an experiment; ``False`` if that version was already there.

        With ``replace``, a version already there is overwritten (its command, config, code
        version and direction; its creation time stays): the command line does this when no
        attempt of the version ever started a script (a typo in the program, corrected).
        """
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


@runtime_checkable
class TimedReclaim(Protocol):
    """A store that tells, as it reclaims stale leases, when the next one falls stale."""

    async def reclaim_stale_timed(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> StaleLook:
        """``reclaim_stale``, in the same call, and the seconds until the next look is due."""
        ...


class StoreBase(abc.ABC):
    """
    What every store shares: one reservation, one heartbeat are each a batch of one; a batch of
    finishes is recorded one by one unless the store writes it at once; and the store is an
    async context manager that closes itself on exit.
    """

    @abc.abstractmethod
    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials; see ``TrialStore.reserve_many``."""

    @abc.abstractmethod
    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew each lease still current; see ``TrialStore.heartbeat_many``."""

    @abc.abstractmethod
    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record the attempt's outcome; see ``TrialStore.finish``."""

    async def reserve(self, worker: str, request: Reservation = Reservation()) -> Lease | None:
        """Lease a trial; see ``TrialStore.reserve``."""
        leases = await self.reserve_many(worker, 1, request)  # one lease is a batch of one
        return leases[0] if leases else None

    async def heartbeat(self, lease: Lease) -> None:
        """Record that the lease's holder is alive; see ``TrialStore.heartbeat``."""
        if await self.heartbeat_many([lease]):  # one beat is a batch of one
            raise LeaseLost(lease.trial_id)

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """
        Record several outcomes, one ``finish`` after another; see ``TrialStore.finish_many``.

        A store that can write a batch at once (in one transaction) overrides this.
        """
        check_finishes(items)
        answers: builtins.list[TrialStatus | LeaseLost] = []
        for lease, outcome, requeue, hold in items:
            try:
                answers.append(await self.finish(lease, outcome, requeue=requeue, hold=hold))
            except LeaseLost as exc:  # a repeat of an item of this batch is lost too
                answers.append(exc)
        return answers

    async def aclose(self) -> None:  # noqa: B027 - a store without connections has none to close
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
