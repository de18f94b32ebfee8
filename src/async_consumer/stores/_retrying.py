"""
A worker's link to its store: calls retried while the store is unreachable, up to a limit.

Stores raise ``StoreUnavailable`` for what is worth a retry (a refused, reset or terminated
connection, a restarting server, too many connections, a busy or failing SQLite file) and plain
``StoreError`` for what is not (a newer schema, bad credentials). The link retries the former with
capped exponential backoff and full jitter, logs one line when the store goes away and one when
it is back, and gives up only when it has been away longer than ``limit``.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import TypeVar

import anyio

from .._errors import LeaseLost, StoreUnavailable
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Lease, Outcome, StoredTrial, Trial, TrialStatus
from ._protocol import HeldLease, StoreBase, TrialStore

__all__ = ["DEFAULT_OUTAGE_LIMIT", "Outage", "RetryingStore"]

logger = logging.getLogger("async_consumer")

_T = TypeVar("_T")

DEFAULT_OUTAGE_LIMIT = 300.0
"""Seconds a worker waits for an unreachable store before it gives up (five minutes)."""


class Outage:
    """
    Whether the store is reachable, as every call through one link has seen it.

    Args:
        limit: seconds the store may stay unreachable before calls give up.
        backoff: seconds before the first retry; doubled for each further one.
        max_backoff: the longest wait between two tries (so a return is noticed soon).
    """

    def __init__(
        self,
        limit: float = DEFAULT_OUTAGE_LIMIT,
        *,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        if not limit > 0:
            msg = f"the store outage limit must be positive, not {limit}"
            raise ValueError(msg)
        self.limit = limit
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.down_since: float | None = None
        self.back_at: float | None = None
        """When the last outage that was logged ended (``anyio.current_time``)."""
        self.outages = 0
        """How many outages were logged."""
        self._logged = False

    async def call(self, op: Callable[[], Awaitable[_T]], *, until: float | None = None) -> _T:
        """
        Await ``op()``, again and again while it raises ``StoreUnavailable``.

        Raises:
            StoreUnavailable: the store has been away longer than ``limit``, or past ``until``
                (``anyio.current_time``), whichever comes first.
        """
        delay, failures = self.backoff, 0
        while True:
            try:
                result = await op()
            except StoreUnavailable as exc:
                failures += 1
                wait = self._failed(exc, failures, until)
                await anyio.sleep(min(delay, wait) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff)
            else:
                self._succeeded()
                return result

    def _failed(self, exc: StoreUnavailable, failures: int, until: float | None) -> float:
        """Note a failure; return how long retries may go on, or raise if they may not."""
        now = anyio.current_time()
        if self.down_since is None:
            self.down_since = now
        # a single failure that the next try gets through (a terminated connection) is no outage
        if failures > 1 and not self._logged:
            self._logged = True
            self.outages += 1
            logger.warning("store unreachable, retrying for up to %g s: %s", self.limit, exc)
        end = self.down_since + self.limit
        if now >= end:
            msg = f"the store was unreachable for {now - self.down_since:.0f} s: {exc}"
            raise StoreUnavailable(msg) from exc
        if until is not None and now >= until:
            raise exc
        return min(end, until if until is not None else end) - now

    def _succeeded(self) -> None:
        if self.down_since is None:
            return
        now = anyio.current_time()
        if self._logged:
            logger.warning("store reachable again after %.1f s", now - self.down_since)
            self.back_at = now
        self.down_since = None
        self._logged = False


class RetryingStore(StoreBase):
    """
    A store whose every call is retried through an :class:`Outage` while the store is away.

    A ``finish`` is retried while the lease can still be valid: ``lease_seconds`` after its
    last successful reservation or heartbeat (or, without ``lease_seconds``, for the whole
    outage limit). If a finish that failed in flight was in fact committed, its retry is told
    ``LeaseLost``; the link then reads the trial back and returns normally when the attempt
    already holds this outcome, so a completed result is never reported as rejected.

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
        """Close the store behind the link."""
        await self.store.aclose()

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials; see ``TrialStore.add``."""
        batch = builtins.list(trials)
        return await self.outage.call(lambda: self.store.add(batch, exist_ok=exist_ok))

    async def reserve(
        self,
        worker: str,
        *,
        host: str = "",
        skip: Collection[str] = (),
        hold: bool = True,
        holder: str = "",
        suspects: bool = True,
    ) -> Lease | None:
        """Lease a trial; see ``TrialStore.reserve``."""
        began = anyio.current_time()
        lease = await self.outage.call(
            lambda: self.store.reserve(
                worker, host=host, skip=skip, hold=hold, holder=holder, suspects=suspects
            )
        )
        if lease is not None:
            self._beaten[lease.trial_id, lease.token] = began
        return lease

    async def heartbeat(self, lease: Lease) -> None:
        """Refresh a lease, retried until it may have run out; see ``TrialStore.heartbeat``."""
        key = (lease.trial_id, lease.token)
        began = anyio.current_time()
        await self.outage.call(lambda: self.store.heartbeat(lease), until=self._lease_end(key))
        self._beaten[key] = began

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
            return await self.outage.call(once, until=self._lease_end(key))
        except LeaseLost:
            if not failed:
                raise
            return await self._already_finished(lease, outcome)
        except StoreUnavailable as exc:
            if self.outage.down_since is not None and self._past_limit():
                raise
            msg = f"the store was unreachable until the lease ran out ({exc})"
            raise LeaseLost(lease.trial_id, msg) from exc
        finally:
            self._beaten.pop(key, None)

    def _past_limit(self) -> bool:
        down = self.outage.down_since
        return down is not None and anyio.current_time() - down >= self.outage.limit

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

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases held from ``prefix``; see ``TrialStore.held_leases``."""
        return await self.outage.call(lambda: self.store.held_leases(prefix))

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        return await self.outage.call(lambda: self.store.reclaim_leases(leases, message))

    async def reclaim_stale(self, older_than: float) -> builtins.list[str]:
        """Interrupt stale leases; see ``TrialStore.reclaim_stale``."""
        return await self.outage.call(lambda: self.store.reclaim_stale(older_than))

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial; see ``TrialStore.get``."""
        return await self.outage.call(lambda: self.store.get(trial_id))

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """Return the trials; see ``TrialStore.list``."""
        return await self.outage.call(lambda: self.store.list(status, offset=offset, limit=limit))

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        return await self.outage.call(lambda: self.store.counts(ids))

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """Make trials new again; see ``TrialStore.rerun``."""
        return await self.outage.call(lambda: self.store.rerun(ids, statuses))

    async def experiment(self, name: str) -> Experiment | None:
        """The experiment's latest version; see ``TrialStore.experiment``."""
        return await self.outage.call(lambda: self.store.experiment(name))

    async def add_experiment(self, experiment: Experiment) -> bool:
        """Record an experiment version; see ``TrialStore.add_experiment``."""
        return await self.outage.call(lambda: self.store.add_experiment(experiment))

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Register a worker or record its beat; see ``TrialStore.record_worker``."""
        await self.outage.call(lambda: self.store.record_worker(worker, starting=starting))

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every registered worker; see ``TrialStore.workers``."""
        return await self.outage.call(self.store.workers)
