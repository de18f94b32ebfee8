"""A store in one SQLite file (WAL), shared by the worker processes of one host."""

from __future__ import annotations

import builtins
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.lowlevel

from .._errors import DuplicateTrial, LeaseLost, StoreError, StoreUnavailable, TrialNotFound
from .._models import Attempt, Lease, Outcome, Status, StoredTrial, Trial, TrialStatus
from . import _sqlite_sql as queries
from ._protocol import HeldLease, StoreBase
from ._rows import dump_trial, load_attempt, load_stored, load_trial, same_params, zero_counts
from ._rules import (
    DEFAULT_MAX_LOST,
    check_max_lost,
    check_older_than,
    check_outcome,
    gone_outcome,
    lost_outcome,
    settled_status,
)

__all__ = ["SQLiteStore", "path_from_url"]

_T = TypeVar("_T")
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
# worth a retry later (by a worker's store link): busy or locked for long, or an I/O error
_TRANSIENT = {*_BUSY, sqlite3.SQLITE_IOERR}
# a busy database blocks the event loop at most this long per try; then we back off with anyio.sleep
_BUSY_TIMEOUT_MS = 10


def path_from_url(url: str) -> str:
    """
    The file path in a ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` URL.

    Raises:
        ValueError: the URL has a host part or no path.
    """
    path = url.removeprefix("sqlite:///")
    if path == url or not path:
        msg = f"a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path: {url!r}"
        raise ValueError(msg)
    return path


def _is_busy(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in _BUSY


def _error(exc: sqlite3.Error, what: str) -> StoreError:
    """A driver error as ours: ``StoreUnavailable`` when it is worth a retry."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    kind = StoreUnavailable if code in _TRANSIENT else StoreError
    return kind(f"{what}: {exc}")


def _transaction(conn: sqlite3.Connection, begin: str, work: Callable[[], _T]) -> _T:
    conn.execute(begin)
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
    if version > queries.SCHEMA_VERSION:
        msg = f"the store's schema version {version} is newer than this library's {queries.SCHEMA_VERSION}"
        raise StoreError(msg)
    for number in range(version, queries.SCHEMA_VERSION):
        # one statement at a time: executescript would commit the open transaction first
        for statement in filter(str.strip, queries.MIGRATIONS[number].split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?)", (number + 1,))


def _connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # opening happens once per worker, so a long wait for a concurrent opener is acceptable
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _transaction(conn, "BEGIN IMMEDIATE", lambda: _migrate(conn))
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


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
        self, path: str | Path, max_lost: int = DEFAULT_MAX_LOST, *, busy_wait: float = 60.0
    ) -> None:
        self._max_lost = check_max_lost(max_lost)
        self._busy_wait = busy_wait
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(path)
        except sqlite3.Error as exc:
            raise _error(exc, f"cannot open the SQLite store {str(path)!r}") from exc

    async def aclose(self) -> None:
        """Close the database connection."""
        self._conn.close()

    async def _run(self, work: Callable[[], _T], *, write: bool = True) -> _T:
        # checkpoint before, not after: a cancellation must not drop a committed reservation
        await anyio.lowlevel.checkpoint()
        delay, deadline = 0.001, anyio.current_time() + self._busy_wait
        while True:
            try:
                return _transaction(self._conn, "BEGIN IMMEDIATE" if write else "BEGIN", work)
            except sqlite3.Error as exc:
                if not _is_busy(exc) or anyio.current_time() > deadline:
                    raise _error(exc, "SQLite store") from exc
            await anyio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials, all or none; see ``TrialStore.add``."""
        batch = builtins.list(trials)
        return await self._run(lambda: sum(self._add_one(t, exist_ok=exist_ok) for t in batch))

    def _add_one(self, trial: Trial, *, exist_ok: bool) -> int:
        sql = "INSERT INTO trials (id, trial) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
        if self._conn.execute(sql, (trial.id, dump_trial(trial))).rowcount == 1:
            return 1
        (stored,) = self._conn.execute(
            "SELECT trial FROM trials WHERE id = ?", (trial.id,)
        ).fetchone()
        if not (exist_ok and same_params(stored, trial)):
            raise DuplicateTrial(trial.id)
        return 0

    async def reserve(
        self, worker: str, *, host: str = "", holder: str = "", suspects: bool = True
    ) -> Lease | None:
        """Lease the oldest new or interrupted trial; see ``TrialStore.reserve``."""
        args = {"worker": worker, "holder": holder, "suspects": suspects}
        return await self._run(lambda: self._reserve(args, host))

    def _reserve(self, args: dict[str, object], host: str) -> Lease | None:
        rows = self._conn.execute(queries.RESERVE, args).fetchall()
        if not rows:
            return None
        trial_id, text, token, now, lost = rows[0]
        worker = str(args["worker"])
        self._conn.execute(queries.ATTEMPT, (trial_id, token, worker, host, now))
        trial = load_trial(text, token)
        return Lease(trial=trial, token=token, worker=worker, lost_count=lost)

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
        taken = []
        for trial_id, token, _ in leases:
            args = {"id": trial_id, "token": token, "max_lost": self._max_lost}
            taken += self._conn.execute(queries.RECLAIM_LEASE, args).fetchall()
        ends = [(gone_outcome(i, n, message).model_dump_json(), i, n) for i, n in taken]
        self._end_attempts(ends)
        return [trial_id for trial_id, _ in taken]

    async def heartbeat(self, lease: Lease) -> None:
        """Record that the lease's holder is alive; see ``TrialStore.heartbeat``."""
        await self._run(lambda: self._beat(lease))

    def _beat(self, lease: Lease) -> None:
        rows = self._conn.execute(queries.BEAT, (lease.trial_id, lease.token)).fetchall()
        if not rows:
            raise LeaseLost(lease.trial_id)
        sql = "UPDATE attempts SET heartbeat_at = ? WHERE trial_id = ? AND number = ?"
        self._conn.execute(sql, (rows[0][0], lease.trial_id, lease.token))

    async def finish(self, lease: Lease, outcome: Outcome, *, requeue: bool = False) -> TrialStatus:
        """Record the attempt's outcome; see ``TrialStore.finish``."""
        check_outcome(lease, outcome)
        return await self._run(lambda: self._finish(lease, outcome, requeue))

    def _finish(self, lease: Lease, outcome: Outcome, requeue: bool) -> TrialStatus:
        status = settled_status(outcome.status, requeue)
        lost = int(outcome.status is Status.LOST)
        args = {"id": lease.trial_id, "token": lease.token, "lost": lost, "status": status.value}
        args["max_lost"] = self._max_lost
        rows = self._conn.execute(queries.FINISH, args).fetchall()
        if not rows:
            raise LeaseLost(lease.trial_id)
        self._end_attempts([(outcome.model_dump_json(), lease.trial_id, lease.token)])
        return TrialStatus(rows[0][0])

    def _end_attempts(self, rows: builtins.list[tuple[str, str, int]]) -> None:
        sql = "UPDATE attempts SET outcome = ? WHERE trial_id = ? AND number = ?"
        self._conn.executemany(sql, rows)

    async def reclaim_stale(self, older_than: float) -> builtins.list[str]:
        """Interrupt reserved trials whose heartbeat is too old; see ``TrialStore.reclaim_stale``."""
        check_older_than(older_than)
        return await self._run(lambda: self._reclaim(older_than))

    def _reclaim(self, older_than: float) -> builtins.list[str]:
        rows = self._conn.execute(queries.RECLAIM, (self._max_lost, older_than)).fetchall()
        ends = [(lost_outcome(i, n, older_than).model_dump_json(), i, n) for i, n in rows]
        self._end_attempts(ends)
        return [trial_id for trial_id, _ in rows]

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with its attempts; see ``TrialStore.get``."""
        found = await self._run(lambda: self._select(" WHERE id = ?", (trial_id,)), write=False)
        if not found:
            raise TrialNotFound(trial_id)
        return found[0]

    async def list(self, status: TrialStatus | None = None) -> builtins.list[StoredTrial]:
        """Return the trials in the order they were added; see ``TrialStore.list``."""
        if status is None:
            return await self._run(lambda: self._select("", ()), write=False)
        where = " WHERE status = ?"
        return await self._run(lambda: self._select(where, (status.value,)), write=False)

    def _select(self, where: str, args: tuple[str, ...]) -> builtins.list[StoredTrial]:
        trials = self._conn.execute(f"{queries.TRIALS}{where} ORDER BY seq", args).fetchall()
        if not trials:
            return []
        attempts: dict[str, builtins.list[Attempt]] = {row[0]: [] for row in trials}
        in_trials = f" WHERE trial_id IN (SELECT id FROM trials{where})" if where else ""
        sql = f"{queries.ATTEMPTS}{in_trials} ORDER BY trial_id, number"
        for trial_id, *row in self._conn.execute(sql, args):
            attempts[trial_id].append(load_attempt(row))
        return [load_stored(row, attempts[trial_id]) for trial_id, *row in trials]

    async def counts(self) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        sql = "SELECT status, count(*) FROM trials GROUP BY status"
        rows = await self._run(lambda: self._conn.execute(sql).fetchall(), write=False)
        counts = zero_counts()
        counts.update((TrialStatus(status), count) for status, count in rows)
        return counts
