"""
A store whose calls are retried while the store is unreachable, up to a limit.

Stores raise ``StoreUnavailable`` for what is worth a retry (a refused, reset or terminated
connection, a restarting server, too many connections, a busy or failing SQLite file) and plain
``StoreError`` for what is not (a newer schema, bad credentials). A ``RetryingStore`` retries
the former with capped exponential backoff and full jitter, logs one line when the store goes
away and one when it is back, and gives up only when it has been away longer than ``limit``.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Mapping, Sequence

import anyio

from .._errors import LeaseLost, StoreUnavailable
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Lease, Outcome, StoredTrial, Trial, TrialStatus
from ._outage import DEFAULT_OUTAGE_LIMIT, Outage
from ._protocol import (
    VALUES_PAGE,
    Finish,
    HeldLease,
    IntermediateValue,
    Reservation,
    StaleLook,
    StoreBase,
    TimedReclaim,
    TrialStore,
)

__all__ = ["DEFAULT_OUTAGE_LIMIT", "Outage", "RetryingStore"]


class RetryingStore(StoreBase):
    """
    A store whose every call is retried through an :class:`Outage` while the store is away.

    A ``finish`` is retried until the store answers (up to the outage limit), however long
    ago its lease was last renewed: the token fences it, so the store records the outcome if
    the lease is still current and refuses it (``LeaseLost``) if the trial moved on; a local
    timer never throws a finished result away. After ``outage.give_up()`` (the worker is
    leaving), a call the store does not answer at once is given up (``StoreUnavailable``): a
    finished attempt's files on disk keep its outcome for the next holder of the trial. If a finish that failed
    in flight was in fact committed, its retry is told ``LeaseLost``; the store then reads the
    trial back and returns normally when the attempt already holds this outcome, so a
    completed result is never reported as rejected.

    Args:
        store: the store to call.
        outage: the reachability state to share (a new one with the default limit if ``None``).
        lease_seconds: how long a lease lives without a heartbeat (``lost_after`` beats).
    """

    def __init__(
        self, store: TrialStore, *, outage: Outage | None = None, lease_seconds: float | None = None
    ) -> None:
        self.store = store
        self.outage = outage or Outage()
        self.lease_seconds = lease_seconds
        self._beaten: dict[tuple[str, int], float] = {}  # lease -> when its last beat began

    async def aclose(self) -> None:
        """Close the store behind it."""
        await self.store.aclose()

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials; see ``TrialStore.add``."""
        batch = builtins.list(trials)
        return await self.outage.call(lambda: self.store.add(batch, exist_ok=exist_ok))

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials; see ``TrialStore.reserve_many``."""
        began = anyio.current_time()
        leases = await self.outage.call(lambda: self.store.reserve_many(worker, n, request))
        for lease in leases:
            self._beaten[lease.trial_id, lease.token] = began
        return leases

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Refresh leases, retried until the first may run out; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        began = anyio.current_time()
        until = self._first_end(leases)
        lost = set(await self.outage.call(lambda: self.store.heartbeat_many(leases), until=until))
        for lease in leases:
            if lease.trial_id not in lost:
                self._beaten[lease.trial_id, lease.token] = began
        return [lease.trial_id for lease in leases if lease.trial_id in lost]

    def _first_end(self, leases: Iterable[Lease]) -> float | None:
        """When the first of these leases may run out (``None`` if none is known to)."""
        ends = (self._lease_end((lease.trial_id, lease.token)) for lease in leases)
        return min((end for end in ends if end is not None), default=None)

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record an outcome, retried while the lease can be valid; see ``TrialStore.finish``."""
        key = (lease.trial_id, lease.token)
        failed = False

        async def once() -> TrialStatus:
            nonlocal failed
            try:
                return await self.store.finish(lease, outcome, requeue=requeue, hold=hold)
            except StoreUnavailable:
                failed = True
                raise

        try:
            return await self.outage.call(once)
        except LeaseLost:
            if not failed:
                raise
            return await self._already_finished(lease, outcome)
        finally:
            self._beaten.pop(key, None)

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """
        Record outcomes, retried until the store answers; see ``TrialStore.finish_many``.

        Items a try that failed in flight had in fact recorded are answered with the trial's
        status.
        """
        failed = False  # whether a try failed in flight (it may have been committed)

        async def once() -> builtins.list[TrialStatus | LeaseLost]:
            nonlocal failed
            try:
                return await self.store.finish_many(items)
            except StoreUnavailable:
                failed = True
                raise

        try:
            got = await self.outage.call(once)
        finally:
            for item in items:
                self._beaten.pop((item.lease.trial_id, item.lease.token), None)
        if failed:
            got = [
                await self._recorded(item, answer) for item, answer in zip(items, got, strict=True)
            ]
        return got

    async def _recorded(
        self, item: Finish, answer: TrialStatus | LeaseLost
    ) -> TrialStatus | LeaseLost:
        """The answer, or the trial's status if a try that seemed to fail recorded the item."""
        if not isinstance(answer, LeaseLost):
            return answer
        try:
            return await self._already_finished(item.lease, item.outcome)
        except LeaseLost:
            return answer

    async def _already_finished(self, lease: Lease, outcome: Outcome) -> TrialStatus:
        """The trial's status if this outcome was recorded by a try that seemed to fail."""
        stored = await self.get(lease.trial_id)
        for attempt in stored.attempts:
            if attempt.number == lease.token and attempt.outcome == outcome:
                return stored.status
        raise LeaseLost(lease.trial_id)

    def _lease_end(self, key: tuple[str, int]) -> float | None:
        began = self._beaten.get(key)
        if began is None or self.lease_seconds is None:
            return None
        return began + self.lease_seconds

    async def unreserve(self, lease: Lease) -> bool:
        """Undo a reservation that never started; see ``TrialStore.unreserve``."""
        try:
            return await self.outage.call(lambda: self.store.unreserve(lease))
        finally:
            self._beaten.pop((lease.trial_id, lease.token), None)

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases held from ``prefix``; see ``TrialStore.held_leases``."""
        return await self.outage.call(lambda: self.store.held_leases(prefix))

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        return await self.outage.call(lambda: self.store.reclaim_leases(leases, message))

    async def reclaim_stale(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> builtins.list[str]:
        """Interrupt stale leases; see ``TrialStore.reclaim_stale``."""
        return await self.outage.call(
            lambda: self.store.reclaim_stale(
                older_than, spare=spare, alive=alive, running=running, wedged=wedged
            )
        )

    async def reclaim_stale_timed(
        self,
        older_than: float,
        *,
        spare: str = "",
        alive: Collection[str] = (),
        running: Collection[str] = (),
        wedged: float | None = None,
    ) -> StaleLook:
        """
        Interrupt stale leases, and say when the next falls stale; see ``TimedReclaim`` (a
        store that cannot tell reclaims as ``reclaim_stale`` does, the next look not known).
        """
        store = self.store
        if isinstance(store, TimedReclaim):
            timed = store
            return await self.outage.call(
                lambda: timed.reclaim_stale_timed(
                    older_than, spare=spare, alive=alive, running=running, wedged=wedged
                )
            )
        reclaimed = await self.reclaim_stale(
            older_than, spare=spare, alive=alive, running=running, wedged=wedged
        )
        return StaleLook(reclaimed, None)

    async def clear_losses(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Clear the losses of these leases' attempts; see ``TrialStore.clear_losses``."""
        return await self.outage.call(lambda: self.store.clear_losses(leases))

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial; see ``TrialStore.get``."""
        return await self.outage.call(lambda: self.store.get(trial_id))

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """Return the trials; see ``TrialStore.list``."""
        return await self.outage.call(lambda: self.store.list(status, offset=offset, limit=limit))

    async def best(self, *, maximize: bool = False) -> StoredTrial | None:
        """The best completed trial; see ``TrialStore.best``."""
        return await self.outage.call(lambda: self.store.best(maximize=maximize))

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        return await self.outage.call(lambda: self.store.counts(ids))

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """Make trials new again; see ``TrialStore.rerun``."""
        return await self.outage.call(lambda: self.store.rerun(ids, statuses))

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """Record intermediate values; see ``TrialStore.record_values``."""
        await self.outage.call(lambda: self.store.record_values(values, tokens=tokens))

    async def read_values(
        self, after: int = 0, *, limit: int = VALUES_PAGE
    ) -> tuple[builtins.list[IntermediateValue], int]:
        """The values recorded after a cursor; see ``TrialStore.read_values``."""
        return await self.outage.call(lambda: self.store.read_values(after, limit=limit))

    async def experiment(self, name: str) -> Experiment | None:
        """The experiment's latest version; see ``TrialStore.experiment``."""
        return await self.outage.call(lambda: self.store.experiment(name))

    async def add_experiment(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """Record an experiment version; see ``TrialStore.add_experiment``."""
        return await self.outage.call(
            lambda: self.store.add_experiment(experiment, replace=replace)
        )

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Register a worker or record its beat; see ``TrialStore.record_worker``."""
        await self.outage.call(lambda: self.store.record_worker(worker, starting=starting))

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every registered worker; see ``TrialStore.workers``."""
        return await self.outage.call(self.store.workers)
