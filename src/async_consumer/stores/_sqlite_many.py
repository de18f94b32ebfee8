"""The SQLite store's batched calls: each one ``BEGIN IMMEDIATE`` transaction, set-based SQL."""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from .._errors import LeaseLost
from .._models import Lease, Outcome, TrialStatus
from . import _sqlite_sql as queries
from ._protocol import Finish
from ._rows import load_trial, new_lease
from ._rules import check_count, check_finishes, not_renewed

__all__ = ["SQLiteBatches"]

_T = TypeVar("_T")


class SQLiteBatches:
    """
    ``reserve_many``, ``heartbeat_many`` and ``finish_many`` for a store on one SQLite file.

    A beat of a thousand leases is two statements (the trials, then their attempts), whatever
    their number; a reservation of ``n`` is one statement and one insert per attempt.
    """

    _conn: sqlite3.Connection

    async def _run(self, work: Callable[[], _T], *, write: bool = True) -> _T:
        raise NotImplementedError  # pragma: no cover - the store's own transaction

    def _finish(self, lease: Lease, outcome: Outcome, requeue: bool, hold: float) -> TrialStatus:
        raise NotImplementedError  # pragma: no cover - the store's own step

    async def reserve_many(
        self,
        worker: str,
        n: int,
        *,
        host: str = "",
        skip: Collection[str] = (),
        hold: bool = True,
        holder: str = "",
        suspects: bool = True,
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials at once; see ``TrialStore.reserve_many``."""
        args = {"worker": worker, "n": check_count(n), "hold": hold, "holder": holder}
        args.update(suspects=suspects)
        return await self._run(lambda: self._reserve_many(args, host, skip))

    def _reserve_many(
        self, args: dict[str, object], host: str, skip: Collection[str]
    ) -> builtins.list[Lease]:
        # ``skip`` is read now, in the transaction: a caller may have added to it meanwhile
        args = {**args, "skip": json.dumps(builtins.list(skip))}
        rows = sorted(self._conn.execute(queries.RESERVE_MANY, args).fetchall())
        worker = str(args["worker"])
        attempts = [
            {"trial_id": trial_id, "token": token, "worker": worker, "host": host, "now": now}
            for _, trial_id, _, token, now, _ in rows
        ]
        self._conn.executemany(queries.ATTEMPT, attempts)
        return [
            new_lease(load_trial(text, token), token, worker, lost)
            for _, _, text, token, _, lost in rows
        ]

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        pairs = json.dumps([(lease.trial_id, lease.token) for lease in leases])
        return await self._run(lambda: self._beat_many(leases, pairs))

    def _beat_many(self, leases: Sequence[Lease], pairs: str) -> builtins.list[str]:
        renewed = self._conn.execute(queries.BEAT_MANY, (pairs,)).fetchall()
        self._conn.execute(queries.BEAT_ATTEMPTS, (json.dumps(renewed),))
        return not_renewed(leases, {(trial_id, token) for trial_id, token, _ in renewed})

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes at once; see ``TrialStore.finish_many``."""
        check_finishes(items)
        if not items:
            return []
        return await self._run(lambda: [self._finish_or_lost(item) for item in items])

    def _finish_or_lost(self, item: Finish) -> TrialStatus | LeaseLost:
        # fenced one by one: a lost item writes nothing, and a repeat of an item finds it done
        try:
            return self._finish(*item)
        except LeaseLost as exc:
            return exc
