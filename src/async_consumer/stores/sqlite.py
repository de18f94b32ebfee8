"""A store in one SQLite file (WAL), shared by the worker processes of one host."""

from __future__ import annotations

import builtins
import json
import random
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.lowlevel

from .._errors import DuplicateTrial, LeaseLost
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Attempt, Lease, Outcome, Status, StoredTrial, Trial, TrialStatus
from . import _rows, _rules
from . import _sqlite_sql as queries
from ._protocol import (
    VALUES_PAGE,
    Finish,
    HeldLease,
    IntermediateValue,
    Reservation,
    StaleLook,
    StoreBase,
)
from ._sqlite_file import connect, error, is_busy, path_from_url, transaction

__all__ = ["SQLiteStore", "path_from_url"]

_T = TypeVar("_T")


class SQLiteStore(StoreBase):
    """
    A ``TrialStore`` in one SQLite file, safe for several worker processes on one host.

    The file is opened in WAL mode and every write is a ``BEGIN IMMEDIATE`` transaction. Calls run
    inline on the event loop (a thread hop costs more than the query); a busy database blocks the
    loop for at most 10 ms per try, then the call backs off with ``anyio.sleep`` and tries again.
    Times come from SQLite's clock. ``synchronous = NORMAL``: a commit survives the crash of any
    process (the failure leases are for), though the last ones may be lost if the machine loses
    power. Works on asyncio and trio.

    Args:
        path: the database file, created with its parent directories if missing.
        max_lost: how many times a trial may lose its lease before it is marked broken.
        busy_wait: seconds to keep retrying a busy database before raising ``StoreError``.
    """

    def __init__(
        self, path: str | Path, max_lost: int = _rules.DEFAULT_MAX_LOST, *, busy_wait: float = 60.0
    ) -> None:
        self._max_lost = _rules.check_max_lost(max_lost)
        self._busy_wait = busy_wait
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = connect(path)
        except sqlite3.Error as exc:
            raise error(exc, f"cannot open the SQLite store {str(path)!r}") from exc

    async def aclose(self) -> None:
        """Close the database connection."""
        self._conn.close()

    async def _run(self, work: Callable[[], _T], *, write: bool = True) -> _T:
        # checkpoint before, not after: a cancellation must not drop a committed reservation
        await anyio.lowlevel.checkpoint()
        delay, deadline = 0.001, anyio.current_time() + self._busy_wait
        while True:
            try:
                return transaction(self._conn, "BEGIN IMMEDIATE" if write else "BEGIN", work)
            except sqlite3.Error as exc:
                if not is_busy(exc) or anyio.current_time() > deadline:
                    raise error(exc, "SQLite store") from exc
            await anyio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials, all or none; see ``TrialStore.add``."""
        batch = builtins.list(trials)
        return await self._run(lambda: self._add_all(batch, exist_ok=exist_ok))

    def _add_all(self, batch: builtins.list[Trial], *, exist_ok: bool) -> int:
        # the ids already there, in one query; the new trials, in one statement
        ids = json.dumps([trial.id for trial in batch])
        known = dict(self._conn.execute(queries.KNOWN, (ids,)).fetchall())
        fresh: dict[str, Trial] = {}
        for trial in batch:
            if trial.id in fresh:
                same = fresh[trial.id].params == trial.params
            elif trial.id in known:
                same = _rows.same_params(known[trial.id], trial)
            else:
                fresh[trial.id] = trial
                continue
            if not (exist_ok and same):
                raise DuplicateTrial(trial.id)
        rows = ((trial.id, _rows.dump_trial(trial)) for trial in fresh.values())
        self._conn.executemany("INSERT INTO trials (id, trial) VALUES (?, ?)", rows)
        return len(fresh)

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials at once; see ``TrialStore.reserve_many``."""
        _rules.check_count(n)
        return await self._run(lambda: self._reserve_many(worker, n, request))

    def _reserve_many(self, worker: str, n: int, request: Reservation) -> builtins.list[Lease]:
        # ``skip`` is read now, in the transaction: a caller may have added to it meanwhile
        args = {
            "worker": worker,
            "n": n,
            "hold": request.hold,
            "holder": request.holder,
            "suspects": request.suspects,
            "skip": json.dumps(builtins.list(request.skip)),
        }
        rows = sorted(self._conn.execute(queries.RESERVE, args).fetchall())
        attempts = [
            {
                "trial_id": trial_id,
                "token": token,
                "worker": worker,
                "host": request.host,
                "now": now,
            }
            for _, trial_id, _, token, now, _ in rows
        ]
        self._conn.executemany(queries.ATTEMPT, attempts)
        return [
            _rows.new_lease(_rows.load_trial(text, token), token, worker, lost)
            for _, _, text, token, _, lost in rows
        ]

    async def unreserve(self, lease: Lease) -> bool:
        """Undo a reservation that never started; see ``TrialStore.unreserve``."""
        return await self._run(lambda: self._unreserve(lease))

    def _unreserve(self, lease: Lease) -> bool:
        args = {"id": lease.trial_id, "token": lease.token}
        if not self._conn.execute(queries.UNRESERVE, args).fetchall():
            return False
        self._conn.execute(queries.UNRESERVE_ATTEMPT, args)
        return True

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases held from ``prefix``; see ``TrialStore.held_leases``."""
        rows = await self._run(
            lambda: self._conn.execute(queries.HELD, {"prefix": prefix}).fetchall()
        )
        return [(trial_id, token, holder) for trial_id, token, holder in rows]

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        return await self._run(lambda: self._reclaim_leases(leases, message))

    def _reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        rows = []
        for trial_id, token, _ in leases:
            args = {"id": trial_id, "token": token}
            rows += [(*row, False) for row in self._conn.execute(queries.RECLAIM_LEASE, args)]
        self._end_attempts(_rules.gone_ends(rows, message, self._take_back(rows)))
        return [row[0] for row in rows]

    def _take_back(self, rows: builtins.list[tuple[str, int, str, int, bool]]) -> set[str]:
        """
        Record the reclaims of leases just taken back, ``(id, token, worker, lost count,
        alive)``, and charge the losses the evidence supports (``_rules.is_judged``); the ids of
        the suspects excused.
        """
        self._conn.executemany(queries.RECORD_RECLAIM, [(row[2],) for row in rows])
        excused = set()
        for trial_id, token, _, lost, alive in rows:
            args = {"id": trial_id, "token": token}
            if (
                _rules.is_judged(lost, alive)
                and self._conn.execute(queries.AROUND, args).fetchone()[0]
            ):
                excused.add(trial_id)
            elif not alive:
                self._conn.execute(queries.CHARGE, {**args, "max_lost": self._max_lost})
        return excused

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record the attempt's outcome; see ``TrialStore.finish``."""
        _rules.check_outcome(lease, outcome)
        return await self._run(lambda: self._finish(lease, outcome, requeue, hold))

    def _finish(self, lease: Lease, outcome: Outcome, requeue: bool, hold: float) -> TrialStatus:
        status = _rules.settled_status(outcome.status, requeue, outcome.reason)
        lost = int(outcome.status is Status.LOST)
        args = {"id": lease.trial_id, "token": lease.token, "lost": lost, "status": status.value}
        args.update(max_lost=self._max_lost, hold=_rules.check_hold(hold))
        rows = self._conn.execute(queries.FINISH, args).fetchall()
        if not rows:
            raise LeaseLost(lease.trial_id)
        self._end_attempts([(outcome.model_dump_json(), lease.trial_id, lease.token)])
        return TrialStatus(rows[0][0])

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        pairs = json.dumps([(lease.trial_id, lease.token) for lease in leases])
        return await self._run(lambda: self._beat_many(leases, pairs))

    def _beat_many(self, leases: Sequence[Lease], pairs: str) -> builtins.list[str]:
        renewed = self._conn.execute(queries.BEAT_MANY, (pairs,)).fetchall()
        self._conn.execute(queries.BEAT_ATTEMPTS, (json.dumps(renewed),))
        return _rules.not_renewed(leases, {(trial_id, token) for trial_id, token, _ in renewed})

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes at once; see ``TrialStore.finish_many``."""
        _rules.check_finishes(items)
        if not items:
            return []
        return await self._run(lambda: [_rules.fenced(self._finish, item) for item in items])

    def _end_attempts(self, rows: builtins.list[tuple[str, str, int]]) -> None:
        sql = "UPDATE attempts SET outcome = ? WHERE trial_id = ? AND number = ?"
        self._conn.executemany(sql, rows)

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
        _rules.check_older_than(older_than)
        return await self._run(lambda: self._reclaim(older_than, spare, alive, running, wedged))

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
        _rules.check_older_than(older_than)

        def look() -> StaleLook:
            reclaimed = self._reclaim(older_than, spare, alive, running, wedged)
            args = {"older_than": older_than, "spare": spare}
            args |= {"running": json.dumps(builtins.list(running))}
            (next_in,) = self._conn.execute(queries.NEXT_STALE, args).fetchone()
            return StaleLook(reclaimed, next_in)

        return await self._run(look)

    def _reclaim(
        self,
        older_than: float,
        spare: str,
        alive: Collection[str],
        running: Collection[str],
        wedged: float | None,
    ) -> builtins.list[str]:
        live = json.dumps(builtins.list(alive))
        args = {"older_than": older_than, "spare": spare, "alive": live}
        args |= {"running": json.dumps(builtins.list(running)), "wedged": wedged}
        rows = [
            (i, n, w, lost, bool(ran))
            for i, n, w, lost, ran in self._conn.execute(queries.RECLAIM, args)
        ]
        excused = self._take_back(rows)
        ends = _rules.stalled_ends([(i, n, ran) for i, n, _, _, ran in rows], older_than, excused)
        self._end_attempts(ends)
        return [row[0] for row in rows]

    async def clear_losses(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Clear the losses of these leases' attempts; see ``TrialStore.clear_losses``."""
        if not leases:
            return []
        return await self._run(lambda: [lease.trial_id for lease in leases if self._clear(lease)])

    def _clear(self, lease: Lease) -> bool:
        args = {"id": lease.trial_id, "token": lease.token, "worker": lease.worker}
        rows = self._conn.execute(queries.CHARGED, args).fetchall()
        if not rows:
            return False
        cleared = _rows.cleared_loss(rows[0], self._max_lost)
        if cleared is None:
            return False
        update = {"id": lease.trial_id, "status": cleared.status.value}
        self._conn.execute(queries.CLEAR, {**update, "lost_count": cleared.lost_count})
        self._end_attempts([(cleared.outcome.model_dump_json(), lease.trial_id, lease.token)])
        return True

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with its attempts; see ``TrialStore.get``."""
        found = await self._run(lambda: self._select(" WHERE id = ?", (trial_id,)), write=False)
        return _rules.the_trial(found, trial_id)

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """Return the trials in the order they were added; see ``TrialStore.list``."""
        page = (-1 if limit is None else limit, offset)  # LIMIT -1: every row
        if status is None:
            return await self._run(lambda: self._select("", (), page), write=False)
        where = " WHERE status = ?"
        return await self._run(lambda: self._select(where, (status.value,), page), write=False)

    async def best(self, *, maximize: bool = False) -> StoredTrial | None:
        """The completed trial with the best objective; see ``TrialStore.best``."""
        where = queries.BEST.format(order="DESC" if maximize else "ASC")
        found = await self._run(lambda: self._select(where, ()), write=False)
        return found[0] if found else None

    def _select(
        self, where: str, args: tuple[str, ...], page: tuple[int, int] = (-1, 0)
    ) -> builtins.list[StoredTrial]:
        sql = f"{queries.TRIALS}{where} ORDER BY seq LIMIT ? OFFSET ?"
        trials = self._conn.execute(sql, (*args, *page)).fetchall()
        if not trials:
            return []
        attempts: dict[str, builtins.list[Attempt]] = {row[0]: [] for row in trials}
        # every trial's attempts when every trial was asked for; else those of the ones read
        whole = not where and page == (-1, 0)
        in_trials = "" if whole else " WHERE trial_id IN (SELECT value FROM json_each(?))"
        bound = () if whole else (json.dumps(builtins.list(attempts)),)
        sql = f"{queries.ATTEMPTS}{in_trials} ORDER BY trial_id, number"
        for trial_id, *row in self._conn.execute(sql, bound):
            attempts[trial_id].append(_rows.load_attempt(row))
        return [_rows.load_stored(row, attempts[trial_id]) for trial_id, *row in trials]

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        sql, args = queries.COUNTS, ""
        if ids is not None:
            sql, args = queries.COUNTS_OF, json.dumps(builtins.list(ids))
        bound = (args,) if ids is not None else ()
        rows = await self._run(lambda: self._conn.execute(sql, bound).fetchall(), write=False)
        counts = _rows.zero_counts()
        counts.update((TrialStatus(status), count) for status, count in rows)
        return counts

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Register a worker or record its beat; see ``TrialStore.record_worker``."""
        sql = queries.REGISTER_WORKER if starting else queries.BEAT_WORKER
        await self._run(lambda: self._conn.execute(sql, _rows.worker_row(worker)))

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every worker that registered; see ``TrialStore.workers``."""
        rows = await self._run(lambda: self._conn.execute(queries.WORKERS).fetchall(), write=False)
        return [_rows.load_worker(row) for row in rows]

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """Make broken or interrupted trials new again; see ``TrialStore.rerun``."""
        args = (json.dumps(builtins.list(ids)), json.dumps(_rules.check_rerun(statuses)))
        return await self._run(lambda: self._conn.execute(queries.RERUN, args).rowcount)

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """Record intermediate values in one write; see ``TrialStore.record_values``."""
        if values:
            tokens = tokens or {}
            rows = [{**value._asdict(), "token": tokens.get(value.trial_id)} for value in values]
            await self._run(lambda: self._conn.executemany(queries.RECORD_VALUES, rows))

    async def read_values(
        self, after: int = 0, *, limit: int = VALUES_PAGE
    ) -> tuple[builtins.list[IntermediateValue], int]:
        """The values recorded after a cursor; see ``TrialStore.read_values``."""
        rows = await self._run(
            lambda: self._conn.execute(queries.VALUES_AFTER, (after, limit)).fetchall(),
            write=False,
        )
        return [IntermediateValue(*row[1:]) for row in rows], rows[-1][0] if rows else after

    async def experiment(self, name: str) -> Experiment | None:
        """The latest version of an experiment; see ``TrialStore.experiment``."""
        rows = await self._run(
            lambda: self._conn.execute(queries.EXPERIMENT, (name,)).fetchall(), write=False
        )
        return _rows.load_experiment(rows[0]) if rows else None

    async def add_experiment(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """Record a version of an experiment; see ``TrialStore.add_experiment``."""
        args = _rows.dump_experiment(experiment)
        sql = queries.REPLACE_EXPERIMENT if replace else queries.ADD_EXPERIMENT
        return await self._run(lambda: self._conn.execute(sql, args).rowcount == 1)
