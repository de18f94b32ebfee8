"""A store in PostgreSQL (asyncpg), shared by workers on many hosts; asyncio only."""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

from .._errors import DuplicateTrial, LeaseLost, StoreError
from .._experiment import Experiment
from .._fleet import WorkerInfo
from .._models import Attempt, Lease, Outcome, Status, StoredTrial, Trial, TrialStatus
from . import _postgres_sql as queries
from . import _rows, _rules
from ._postgres_connection import (
    DEFAULT_POOL_SIZE,
    DRIVER_ERRORS,
    connect_pool,
    split_url,
    translate,
)
from ._protocol import (
    VALUES_PAGE,
    Finish,
    HeldLease,
    IntermediateValue,
    Reservation,
    StaleLook,
    StoreBase,
)

__all__ = ["DEFAULT_POOL_SIZE", "PostgresStore"]

_DEFAULT = "async_consumer"


class PostgresStore(StoreBase):
    """
    A ``TrialStore`` in PostgreSQL, for workers on many hosts; asyncio only (asyncpg).

    Open it with :meth:`open`, which creates or migrates its tables. A reservation is one
    ``UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED)`` statement; times come from the
    server's ``now()``.
    """

    def __init__(
        self,
        pool: Any,
        *,
        schema: str,
        max_lost: int = _rules.DEFAULT_MAX_LOST,
        owns_pool: bool = False,
    ) -> None:
        """
        Use a pool whose schema :meth:`open` has prepared; prefer :meth:`open`.

        Args:
            pool: an ``asyncpg.Pool``.
            schema: the PostgreSQL schema holding the store's tables.
            max_lost: how many times a trial may lose its lease before it is marked broken.
            owns_pool: whether ``aclose`` closes the pool.
        """
        self._pool = pool
        self._q = queries.queries(schema)
        self._schema = schema
        self._max_lost = _rules.check_max_lost(max_lost)
        self._owns_pool = owns_pool

    @classmethod
    async def open(
        cls,
        dsn: str | Any,
        *,
        schema: str | None = None,
        max_lost: int = _rules.DEFAULT_MAX_LOST,
        max_connections: int | None = None,
    ) -> Self:
        """
        Connect, create or migrate the store's tables, and return the store.

        Args:
            dsn: a ``postgresql://`` URL (``?schema=name`` picks the schema,
                ``?pool_size=N`` the size of the pool), or an ``asyncpg.Pool`` that the caller
                keeps and closes.
            schema: the PostgreSQL schema for the tables; default ``async_consumer``.
            max_lost: how many times a trial may lose its lease before it is marked broken.
            max_connections: the size of the pool this opens (default: the URL's
                ``pool_size``, else 2).
        """
        url, from_url, size = split_url(dsn) if isinstance(dsn, str) else ("", None, None)
        max_connections = max_connections or size or DEFAULT_POOL_SIZE
        name = schema or from_url or _DEFAULT
        # refuse bad arguments before connecting, so that no pool is left open
        queries.quote(name)
        _rules.check_max_lost(max_lost)
        pool = await connect_pool(url, max_connections) if url else dsn
        store = cls(pool, schema=name, max_lost=max_lost, owns_pool=bool(url))
        try:
            await store._migrate()
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._connection() as conn:  # at this version: two reads, no lock to queue on
            if await conn.fetchval(self._q["version_table_exists"]) and (
                await conn.fetchval(self._q["version"]) == queries.SCHEMA_VERSION
            ):
                return
        async with self._connection() as conn, conn.transaction():
            # two workers opening at once must not both create the tables
            await conn.execute(self._q["lock"], f"async_consumer:{self._schema}")
            await conn.execute(self._q["create_schema"])
            await conn.execute(self._q["version_table"])
            version = await conn.fetchval(self._q["version"]) or 0
            if version > queries.SCHEMA_VERSION:
                msg = f"the store's schema version {version} is newer than this library's"
                raise StoreError(msg)
            for number in range(version, queries.SCHEMA_VERSION):
                await conn.execute(queries.migration(self._schema, number))
                await conn.execute(self._q["set_version"], number + 1)

    async def aclose(self) -> None:
        """Close the connection pool, if the store opened it."""
        if self._owns_pool:
            self._owns_pool = False
            await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        connected = False
        try:
            async with self._pool.acquire() as conn:
                connected = True
                yield conn
        except DRIVER_ERRORS as exc:
            what = "PostgreSQL store" if connected else "cannot connect to the PostgreSQL store"
            raise translate(exc, what) from exc

    async def add(self, trials: Iterable[Trial], *, exist_ok: bool = False) -> int:
        """Add new trials, all or none; see ``TrialStore.add``."""
        batch = builtins.list(trials)
        if not batch:
            return 0
        ids = [trial.id for trial in batch]
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(self._q["add"], ids, [_rows.dump_trial(t) for t in batch])
            added = Counter(row[0] for row in rows)
            clashes = [t for t in batch if not _take(added, t.id)]
            if clashes:
                known = dict(await conn.fetch(self._q["known"], [t.id for t in clashes]))
                _check_clashes(clashes, known, exist_ok=exist_ok)
        return len(rows)

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        """Lease up to ``n`` trials at once; see ``TrialStore.reserve_many``."""
        skip, suspects = builtins.list(request.skip), request.suspects
        args = (worker, request.host, skip, request.hold, request.holder, suspects)
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["reserve"], *args, _rules.check_count(n))
        return [
            _rows.new_lease(_rows.load_trial(text, token), token, worker, lost)
            for text, token, lost in rows
        ]

    async def unreserve(self, lease: Lease) -> bool:
        """Undo a reservation that never started; see ``TrialStore.unreserve``."""
        async with self._connection() as conn:
            return bool(await conn.fetchval(self._q["unreserve"], lease.trial_id, lease.token))

    async def held_leases(self, prefix: str) -> builtins.list[HeldLease]:
        """The current leases held from ``prefix``; see ``TrialStore.held_leases``."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["held"], prefix)
        return [(trial_id, token, holder) for trial_id, token, holder in rows]

    async def reclaim_leases(self, leases: Sequence[HeldLease], message: str) -> builtins.list[str]:
        """Interrupt these leases if still current; see ``TrialStore.reclaim_leases``."""
        ids, tokens = [lease[0] for lease in leases], [lease[1] for lease in leases]
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(self._q["reclaim_leases"], ids, tokens)
            excused = await self._take_back(conn, rows)
            await conn.executemany(self._q["end"], _rules.gone_ends(rows, message, excused))
        return [row[0] for row in rows]

    async def _take_back(self, conn: Any, rows: Sequence[Sequence[Any]]) -> set[str]:
        """
        Record the reclaims of leases just taken back, ``(id, token, worker, lost count,
        alive)``, and charge the losses the evidence supports (``_rules.is_judged``); the ids of
        the suspects excused. Reclaims take turns (a lock held to the commit): each sees the
        ones before it, as in SQLite.
        """
        if not rows:
            return set()
        await conn.execute(self._q["lock"], f"async_consumer:{self._schema}:reclaims")
        await conn.execute(self._q["record_reclaims"], [row[2] for row in rows])
        judged = [row for row in rows if _rules.is_judged(row[3], row[4])]
        found = await conn.fetch(self._q["around"], *_leases(judged)) if judged else []
        excused = {row[0] for row in found}
        charged = [row for row in rows if not row[4] and row[0] not in excused]
        if charged:
            await conn.execute(self._q["charge"], self._max_lost, *_leases(charged))
        return excused

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        """Record the attempt's outcome; see ``TrialStore.finish``."""
        _rules.check_outcome(lease, outcome)
        status = _rules.settled_status(outcome.status, requeue, outcome.reason)
        lost = int(outcome.status is Status.LOST)
        args = (
            lost,
            self._max_lost,
            status.value,
            outcome.model_dump_json(),
            _rules.check_hold(hold),
        )
        async with self._connection() as conn:
            new = await conn.fetchval(self._q["finish"], lease.trial_id, lease.token, *args)
        if new is None:
            raise LeaseLost(lease.trial_id)
        return TrialStatus(new)

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Renew the leases still current; see ``TrialStore.heartbeat_many``."""
        if not leases:
            return []
        ids, tokens = [lease.trial_id for lease in leases], [lease.token for lease in leases]
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["beat_many"], ids, tokens)
        return _rules.not_renewed(leases, {(trial_id, token) for trial_id, token in rows})

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        """Record several outcomes at once; see ``TrialStore.finish_many``."""
        _rules.check_finishes(items)
        if not items:
            return []
        # a repeat of a lease in the batch is sent once: the statement would apply one at random
        firsts = [items[place] for place in _rules.unique_leases(items)]
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["finish_many"], *_columns(firsts, self._max_lost))
        done = {(trial_id, token): TrialStatus(status) for trial_id, token, status in rows}
        answers: builtins.list[TrialStatus | LeaseLost] = []
        for item in items:
            status = done.pop((item.lease.trial_id, item.lease.token), None)
            answers.append(LeaseLost(item.lease.trial_id) if status is None else status)
        return answers

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
        seconds = float(_rules.check_older_than(older_than))
        async with self._connection() as conn, conn.transaction():
            args = (seconds, spare, [*alive], [*running], wedged)
            rows = await conn.fetch(self._q["reclaim"], *args)
            await self._end_stale(conn, rows, older_than)
        return [row[0] for row in rows]

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
        seconds = float(_rules.check_older_than(older_than))
        async with self._connection() as conn, conn.transaction():
            args = (seconds, spare, [*alive], [*running], wedged)
            # one statement: the leases reclaimed, then a row of their own for the next
            *rows, (*_, next_in) = await conn.fetch(self._q["reclaim_timed"], *args)
            rows = [row[:5] for row in rows]
            await self._end_stale(conn, rows, older_than)
        return StaleLook([row[0] for row in rows], next_in)

    async def _end_stale(self, conn: Any, rows: Sequence[Sequence[Any]], older_than: float) -> None:
        """Take back the stale leases reclaimed, ``(id, token, worker, lost count, alive)``, and
        end their attempts (lost, or interrupted if their holder runs or their loss is excused)."""
        excused = await self._take_back(conn, rows)
        leases = [(i, n, ran) for i, n, _, _, ran in rows]
        await conn.executemany(self._q["end"], _rules.stalled_ends(leases, older_than, excused))

    async def clear_losses(self, leases: Sequence[Lease]) -> builtins.list[str]:
        """Clear the losses of these leases' attempts; see ``TrialStore.clear_losses``."""
        if not leases:
            return []
        ordered = sorted(leases, key=lambda lease: (lease.trial_id, lease.token))
        async with self._connection() as conn, conn.transaction():
            # the trials locked in the order of their ids, as every batch locks them
            return [lease.trial_id for lease in ordered if await self._clear(conn, lease)]

    async def _clear(self, conn: Any, lease: Lease) -> bool:
        # the trial locked first, then read by a statement of its own: it sees what a writer
        # that held the lock meanwhile committed
        await conn.execute(self._q["lock_trial"], lease.trial_id)
        row = await conn.fetchrow(self._q["charged"], lease.trial_id, lease.token, lease.worker)
        if row is None:
            return False
        cleared = _rows.cleared_loss(row, self._max_lost)
        if cleared is None:
            return False
        args = (lease.trial_id, cleared.status.value, cleared.lost_count)
        await conn.execute(self._q["clear"], *args)
        ending = (cleared.outcome.model_dump_json(), lease.trial_id, lease.token)
        await conn.execute(self._q["end"], *ending)
        return True

    async def get(self, trial_id: str) -> StoredTrial:
        """Return one trial with its attempts; see ``TrialStore.get``."""
        found = await self._select("get", trial_id)
        return _rules.the_trial(found, trial_id)

    async def list(
        self, status: TrialStatus | None = None, *, offset: int = 0, limit: int | None = None
    ) -> builtins.list[StoredTrial]:
        """Return the trials in the order they were added; see ``TrialStore.list``."""
        if status is None:
            return await self._select("all", limit, offset)  # LIMIT NULL: every row
        return await self._select("list", status.value, limit, offset)

    async def best(self, *, maximize: bool = False) -> StoredTrial | None:
        """The completed trial with the best objective; see ``TrialStore.best``."""
        found = await self._select("best_desc" if maximize else "best_asc")
        return found[0] if found else None

    async def _select(self, query: str, *args: object) -> builtins.list[StoredTrial]:
        async with self._connection() as conn, conn.transaction(isolation="repeatable_read"):
            trials = await conn.fetch(self._q[query], *args)
            ids = [row[0] for row in trials]
            rows = await conn.fetch(self._q["attempts"], ids) if ids else []
        attempts: dict[str, builtins.list[Attempt]] = {trial_id: [] for trial_id in ids}
        for trial_id, *row in rows:
            attempts[trial_id].append(_rows.load_attempt(row))
        return [_rows.load_stored(row, attempts[trial_id]) for trial_id, *row in trials]

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        """Return how many trials are in each status; see ``TrialStore.counts``."""
        async with self._connection() as conn:
            if ids is None:
                rows = await conn.fetch(self._q["counts"])
            else:
                rows = await conn.fetch(self._q["counts_of"], builtins.list(ids))
        counts = _rows.zero_counts()
        counts.update((TrialStatus(status), count) for status, count in rows)
        return counts

    async def record_worker(self, worker: WorkerInfo, *, starting: bool = False) -> None:
        """Register a worker or record its beat; see ``TrialStore.record_worker``."""
        query = self._q["register_worker" if starting else "beat_worker"]
        async with self._connection() as conn:
            await conn.execute(query, *_rows.worker_row(worker))

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Return every worker that registered; see ``TrialStore.workers``."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["workers"])
        return [_rows.load_worker(tuple(row)) for row in rows]

    async def rerun(self, ids: Collection[str], statuses: Collection[TrialStatus]) -> int:
        """Make broken or interrupted trials new again; see ``TrialStore.rerun``."""
        chosen = _rules.check_rerun(statuses)
        async with self._connection() as conn:
            done = await conn.execute(self._q["rerun"], builtins.list(ids), chosen)
        return int(done.split()[-1])

    async def record_values(
        self, values: Sequence[IntermediateValue], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """
        Record intermediate values in one write; see ``TrialStore.record_values``.

        The writes of values take turns (a lock held to the commit), so that their ``seq`` is
        the order they were committed in: a reader reading on from a cursor never passes over
        a value a slower transaction was still to commit.
        """
        if not values:
            return
        columns = (
            [v.trial_id for v in values],
            [v.step for v in values],
            [v.value for v in values],
            [(tokens or {}).get(v.trial_id) for v in values],
        )
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self._q["lock"], f"async_consumer:{self._schema}:values")
            await conn.execute(self._q["record_values"], *columns)

    async def read_values(
        self, after: int = 0, *, limit: int = VALUES_PAGE
    ) -> tuple[builtins.list[IntermediateValue], int]:
        """The values recorded after a cursor; see ``TrialStore.read_values``."""
        async with self._connection() as conn:
            rows = await conn.fetch(self._q["values_after"], after, limit)
        return [IntermediateValue(*row[1:]) for row in rows], rows[-1][0] if rows else after

    async def experiment(self, name: str) -> Experiment | None:
        """The latest version of an experiment; see ``TrialStore.experiment``."""
        async with self._connection() as conn:
            row = await conn.fetchrow(self._q["experiment"], name)
        return None if row is None else _rows.load_experiment(tuple(row))

    async def add_experiment(self, experiment: Experiment, *, replace: bool = False) -> bool:
        """Record a version of an experiment; see ``TrialStore.add_experiment``."""
        sql = self._q["replace_experiment" if replace else "add_experiment"]
        async with self._connection() as conn:
            added = await conn.fetchval(sql, *_rows.dump_experiment(experiment))
        return added is not None


def _take(added: Counter[str], trial_id: str) -> bool:
    if added[trial_id] == 0:
        return False
    added[trial_id] -= 1
    return True


def _check_clashes(clashes: builtins.list[Trial], known: dict[str, str], *, exist_ok: bool) -> None:
    for trial in clashes:
        if not (exist_ok and _rows.same_params(known[trial.id], trial)):
            raise DuplicateTrial(trial.id)


def _leases(rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[int]]:
    """The trial ids and tokens of rows that begin ``(id, token, ...)``, as two arrays."""
    return [row[0] for row in rows], [row[1] for row in rows]


def _columns(items: Sequence[Finish], max_lost: int) -> tuple[object, ...]:
    """The arrays (and ``max_lost``) of the ``finish_many`` statement, in its parameters' order."""
    return (
        [item.lease.trial_id for item in items],
        [item.lease.token for item in items],
        max_lost,
        [int(item.outcome.status is Status.LOST) for item in items],
        [
            _rules.settled_status(item.outcome.status, item.requeue, item.outcome.reason).value
            for item in items
        ],
        [item.outcome.model_dump_json() for item in items],
        [float(item.hold) for item in items],
    )
