"""A store in the process's memory: for tests, notebooks and single-process runs."""

from __future__ import annotations

import builtins
import heapq
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio.lowlevel

from .._errors import DuplicateTrial, LeaseLost, TrialNotFound
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Attempt, Lease, Outcome, StoredTrial, Trial, TrialStatus
from .._ranking import best_trial
from ._protocol import (
    VALUES_PAGE,
    Finish,
    HeldLease,
    IntermediateValue,
    Reservation,
    StaleLook,
    StoreBase,
)
from ._rows import new_lease, zero_counts
from ._rules import (
    DEFAULT_MAX_LOST,
    PENDING,
    check_count,
    check_finishes,
    check_max_lost,
    check_older_than,
    check_rerun,
    clear_loss,
    excused_outcome,
    fenced,
    gone_outcome,
    is_judged,
    settle,
    stalled_outcome,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class Record:
    """One trial of a memory store, as the store changes it in place."""

    seq: int
    trial: Trial
    status: TrialStatus = TrialStatus.NEW
    token: int = 0
    worker: str | None = None
    heartbeat_at: datetime | None = None
    lost_count: int = 0
    holder: str = ""
    attempts: builtins.list[Attempt] = field(default_factory=builtins.list)
    not_before: datetime | None = None

    def stored(self) -> StoredTrial:
        """The trial as a store returns it, with every attempt."""
        trial = self.trial.model_copy(update={"attempt": max(len(self.attempts), 1)})
        return StoredTrial(
            trial=trial,
            status=self.status,
            token=self.token,
            worker=self.worker,
            heartbeat_at=self.heartbeat_at,
            lost_count=self.lost_count,
            attempts=tuple(self.attempts),
        )

    def end_attempt(self, outcome: Outcome) -> None:
        """Record the outcome on the latest attempt."""
        last = self.attempts[-1]
        update = {"outcome": outcome, "heartbeat_at": self.heartbeat_at}
        self.attempts[-1] = last.model_copy(update=update)


class MemoryStore(StoreBase):
    """
    A ``TrialStore`` kept in memory: nothing survives the process; works on asyncio and trio.

    No call awaits between its steps, so no other task sees one half done: in one process,
    that is what a transaction is.

    Args:
        max_lost: how many times a trial may lose its lease before it is marked broken.
    """

    def __init__(self, max_lost: int = DEFAULT_MAX_LOST) -> None:
        self._max_lost = check_max_lost(max_lost)
        self._records: dict[str, Record] = {}
        self._pending: builtins.list[tuple[int, str]] = []
        self._workers: dict[str, WorkerInfo] = {}
        self._experiments: dict[tuple[str, int], Experiment] = {}
        self._values: builtins.list[IntermediateValue] = []
        self._steps: set[tuple[str, int]] = set()  # the (trial, step) pairs recorded
        self._reclaims: builtins.list[tuple[str, datetime]] = []  # (worker, when), in order

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials, all or none; see ``TrialStore.add``."""
        await anyio.lowlevel.checkpoint()
        fresh: dict[str, Trial] = {}
        for trial in trials:
            known = self._records[trial.id].trial if trial.id in self._records else None
            known = fresh.get(trial.id, known)
            if known is None:
                fresh[trial.id] = trial
            elif not (exist_ok and known.params == trial.params):
                raise DuplicateTrial(trial.id)
        for trial in fresh.values():
            seq = len(self._records)
            self._records[trial.id] = Record(
                seq, trial.model_copy(update={"attempt": 1}, deep=True)
            )
            heapq.heappush(self._pending, (seq, trial.id))
        return len(fresh)

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials at once; see ``TrialStore.reserve_many``."""
        check_count(n)
        await anyio.lowlevel.checkpoint()
        return self._reserve(n, worker, request)

    def _reserve(self, n: int, worker: str, request: Reservation) -> builtins.list[Lease]:
        now, passed, leases = datetime.now(UTC), [], builtins.list[Lease]()
        try:
            while self._pending and len(leases) < n:
                entry = heapq.heappop(self._pending)
                record = self._records[entry[1]]
                if record.status not in PENDING:
                    continue  # a stale entry: the trial was reserved since
                held = request.hold and record.not_before is not None and record.not_before > now
                suspect = not request.suspects and record.lost_count  # left for another worker
                if held or suspect or record.trial.id in request.skip:
                    passed.append(entry)
                    continue
                record.holder = request.holder
                leases.append(self._lease(record, worker, request.host))
            return leases
        finally:
            for entry in passed:
                heapq.heappush(self._pending, entry)

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases held from ``prefix``; see ``TrialStore.held_leases``."""
        await anyio.lowlevel.checkpoint()
        return [
            (r.trial.id, r.token, r.holder)
            for r in self._records.values()
            if r.status is TrialStatus.RESERVED and r.holder and r.holder.startswith(prefix)
        ]

    def _lease(self, record: Record, worker: str, host: str) -> Lease:
        now = datetime.now(UTC)
        lost = record.lost_count
        record.status, record.worker, record.heartbeat_at = TrialStatus.RESERVED, worker, now
        record.not_before = None
        record.token += 1
        number = len(record.attempts) + 1
        attempt = Attempt(
            number=number,
            token=record.token,
            worker=worker,
            host=host,
            reserved_at=now,
            heartbeat_at=now,
        )
        record.attempts.append(attempt)
        trial = record.trial.model_copy(update={"attempt": number})
        return new_lease(trial, record.token, worker, lost)

    def _held(self, lease: Lease) -> Record:
        record = self._records.get(lease.trial_id)
        if record is None or record.status is not TrialStatus.RESERVED:
            raise LeaseLost(lease.trial_id, "the trial is not reserved")
        if record.token != lease.token:
            raise LeaseLost(lease.trial_id)
        return record

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        await anyio.lowlevel.checkpoint()
        lost = []
        for lease in leases:
            try:
                self._beat(lease)
            except LeaseLost:
                lost.append(lease.trial_id)
        return lost

    def _beat(self, lease: Lease) -> None:
        record = self._held(lease)
        record.heartbeat_at = datetime.now(UTC)
        record.attempts[-1] = record.attempts[-1].model_copy(
            update={"heartbeat_at": record.heartbeat_at}
        )

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record the attempt's outcome; see ``TrialStore.finish``."""
        await anyio.lowlevel.checkpoint()
        check_finishes([Finish(lease, outcome, requeue, hold)])
        return self._finish(lease, outcome, requeue, hold)

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes with no await between them; see ``TrialStore.finish_many``."""
        check_finishes(items)
        if not items:
            return []
        await anyio.lowlevel.checkpoint()
        return [fenced(self._finish, item) for item in items]

    def _finish(self, lease: Lease, outcome: Outcome, requeue: bool, hold: float) -> TrialStatus:
        record = self._held(lease)
        record.not_before = datetime.now(UTC) + timedelta(seconds=hold) if hold else None
        self._settle(record, outcome, requeue)
        return record.status

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        await anyio.lowlevel.checkpoint()
        taken = []
        for trial_id, token, _ in leases:
            record = self._records.get(trial_id)
            current = record and record.status is TrialStatus.RESERVED and record.token == token
            if record and current and record not in taken:
                taken.append(record)
        excused = self._judge(taken, alive=())
        for record in taken:
            trial_id, number = record.trial.id, len(record.attempts)
            ended = gone_outcome(trial_id, number, message)
            if trial_id in excused:
                ended = excused_outcome(trial_id, number, message)
            self._settle(record, ended)
        return [record.trial.id for record in taken]

    def _judge(self, taken: Sequence[Record], alive: Collection[str]) -> set[str]:
        """
        Record the reclaims of the ``taken`` leases (their holders but ``alive`` ones gone or
        silent); the ids of the suspects among them whose loss is excused (:func:`is_judged`).
        """
        now = datetime.now(UTC)
        self._reclaims.extend((record.worker or "", now) for record in taken)
        judged = (r for r in taken if is_judged(r.lost_count, r.holder in alive))
        return {record.trial.id for record in judged if self._around(record)}

    def _around(self, record: Record) -> bool:
        """Whether a worker that never ran the trial lost a lease since its previous attempt."""
        since = record.attempts[max(len(record.attempts) - 2, 0)].reserved_at
        theirs = {attempt.worker for attempt in record.attempts}
        for worker, at in reversed(self._reclaims):
            if at < since:
                return False
            if worker not in theirs:
                return True
        return False

    def _settle(self, record: Record, outcome: Outcome, requeue: bool = False) -> None:
        record.end_attempt(outcome)
        record.status, record.lost_count = settle(
            outcome.status, record.lost_count, self._max_lost, requeue, outcome.reason
        )
        if record.status in PENDING:
            heapq.heappush(self._pending, (record.seq, record.trial.id))

    async def reclaim_stale(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> builtins.list[str]:
        """Interrupt reserved trials whose heartbeat is too old; see ``TrialStore.reclaim_stale``."""
        await anyio.lowlevel.checkpoint()
        limit = datetime.now(UTC) - timedelta(seconds=check_older_than(older_than))
        wedged_at = None if wedged is None else datetime.now(UTC) - timedelta(seconds=wedged)
        stale = [
            record
            for record in self._records.values()
            if record.status is TrialStatus.RESERVED
            and record.heartbeat_at is not None
            and record.heartbeat_at <= limit
            and not (spare and record.holder == spare)
            and (
                record.holder not in running
                or (wedged_at is not None and record.heartbeat_at <= wedged_at)
            )
        ]
        excused = self._judge(stale, alive)
        for record in stale:
            ran, number = record.holder in alive, len(record.attempts)
            ended = stalled_outcome(
                record.trial.id, number, older_than, ran, record.trial.id in excused
            )
            self._settle(record, ended)
        return [record.trial.id for record in stale]

    async def reclaim_stale_timed(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> StaleLook:
        """``reclaim_stale``, and when the next lease falls stale; see ``TimedReclaim``."""
        reclaimed = await self.reclaim_stale(
            older_than, spare=spare, alive=alive, running=running, wedged=wedged
        )
        beats = [
            record.heartbeat_at
            for record in self._records.values()
            if record.status is TrialStatus.RESERVED
            and record.heartbeat_at is not None
            and not (spare and record.holder == spare)
            and record.holder not in running
        ]
        if not beats:
            return StaleLook(reclaimed, None)
        age = (datetime.now(UTC) - min(beats)).total_seconds()
        return StaleLook(reclaimed, older_than - age)

    async def clear_losses(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Clear the losses of these leases' attempts; see ``TrialStore.clear_losses``."""
        await anyio.lowlevel.checkpoint()
        return [lease.trial_id for lease in leases if self._clear(lease)]

    def _clear(self, lease: Lease) -> bool:
        record = self._records.get(lease.trial_id)
        if record is None or not 0 < lease.token <= len(record.attempts):
            return False
        place = lease.token - 1
        attempt = record.attempts[place]
        if attempt.worker != lease.worker:
            return False
        latest = record.attempts[-1].outcome
        was = record.status
        cleared = clear_loss(attempt.outcome, was, record.lost_count, latest, self._max_lost)
        if cleared is None:
            return False
        record.attempts[place] = attempt.model_copy(update={"outcome": cleared.outcome})
        record.status, record.lost_count = cleared.status, cleared.lost_count
        if record.status in PENDING and was not in PENDING:
            heapq.heappush(self._pending, (record.seq, record.trial.id))
        return True

    async def unreserve(self, lease: Lease) -> bool:
        """Undo a reservation that never started; see ``TrialStore.unreserve``."""
        await anyio.lowlevel.checkpoint()
        record = self._records.get(lease.trial_id)
        if record is None or record.status is not TrialStatus.RESERVED:
            return False
        if record.token != lease.token:
            return False
        record.token -= 1
        record.attempts.pop()
        record.status = TrialStatus.INTERRUPTED if record.attempts else TrialStatus.NEW
        heapq.heappush(self._pending, (record.seq, record.trial.id))
        return True

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with its attempts; see ``TrialStore.get``."""
        await anyio.lowlevel.checkpoint()
        record = self._records.get(trial_id)
        if record is None:
            raise TrialNotFound(trial_id)
        return record.stored()

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """Return the trials in the order they were added; see ``TrialStore.list``."""
        await anyio.lowlevel.checkpoint()
        records = (r for r in self._records.values() if status is None or r.status is status)
        end = None if limit is None else offset + limit
        return [r.stored() for r in itertools.islice(records, offset, end)]

    async def best(self, *, maximize: bool = False) -> StoredTrial | None:
        """The completed trial with the best objective; see ``TrialStore.best``."""
        await anyio.lowlevel.checkpoint()
        done = (r.stored() for r in self._records.values() if r.status is TrialStatus.COMPLETED)
        return best_trial(done, maximize=maximize)

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        await anyio.lowlevel.checkpoint()
        counts = zero_counts()
        if ids is None:
            records: Iterable[Record] = self._records.values()
        else:
            records = (self._records[i] for i in set(ids) if i in self._records)
        for record in records:
            counts[record.status] += 1
        return counts

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Register a worker or record its beat; see ``TrialStore.record_worker``."""
        await anyio.lowlevel.checkpoint()
        now = datetime.now(UTC)
        known = self._workers.get(worker.name)
        if starting or known is None:
            self._workers[worker.name] = worker.model_copy(
                update={"started_at": now, "beat_at": now}
            )
            return
        update = {"running": worker.running, "state": worker.state, "beat_at": now}
        self._workers[worker.name] = known.model_copy(update=update)

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every worker that registered; see ``TrialStore.workers``."""
        await anyio.lowlevel.checkpoint()
        return sorted(self._workers.values(), key=_started, reverse=True)

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """Make broken or interrupted trials new again; see ``TrialStore.rerun``."""
        await anyio.lowlevel.checkpoint()
        chosen = set(check_rerun(statuses))
        found = (self._records[i] for i in set(ids) if i in self._records)
        again = [r for r in found if r.status in chosen]
        for record in again:
            record.status, record.lost_count, record.not_before = TrialStatus.NEW, 0, None
            heapq.heappush(self._pending, (record.seq, record.trial.id))
        return len(again)

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """Record intermediate values; see ``TrialStore.record_values``."""
        await anyio.lowlevel.checkpoint()
        for value in values:
            token = (tokens or {}).get(value.trial_id)
            if token is not None:
                record = self._records.get(value.trial_id)
                if not (record and record.status is TrialStatus.RESERVED and record.token == token):
                    continue  # a stale holder's
            if (value.trial_id, value.step) not in self._steps:
                self._steps.add((value.trial_id, value.step))
                self._values.append(value)

    async def read_values(
        self, after: int = 0, *, limit: int = VALUES_PAGE
    ) -> tuple[builtins.list[IntermediateValue], int]:
        """The values recorded after a cursor (their place, from 1); see ``TrialStore.read_values``."""
        await anyio.lowlevel.checkpoint()
        page = self._values[after : after + limit]
        return page, after + len(page)

    async def experiment(self, name: str) -> Experiment | None:
        """The latest version of an experiment; see ``TrialStore.experiment``."""
        await anyio.lowlevel.checkpoint()
        versions = [e for (n, _), e in self._experiments.items() if n == name]
        return max(versions, key=lambda e: e.version, default=None)

    async def add_experiment(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """Record a version of an experiment; see ``TrialStore.add_experiment``."""
        await anyio.lowlevel.checkpoint()
        key = (experiment.name, experiment.version)
        if key in self._experiments and not replace:
            return False
        self._experiments[key] = experiment.model_copy(update={"created_at": datetime.now(UTC)})
        return True


def _started(worker: WorkerInfo) -> datetime:
    return worker.started_at or datetime.min.replace(tzinfo=UTC)
