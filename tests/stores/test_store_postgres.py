"""What only the PostgreSQL store promises: safe concurrent opening, schemas, many workers."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from async_consumer._errors import StoreError
from async_consumer._models import TrialStatus
from async_consumer.stores import PostgresStore, open_store
from async_consumer.stores._postgres_sql import PICK

from ..conftest import NewSchema, postgres_url
from .conftest import first_lease, make_trials, outcome
from .old_stores import postgres_of_version


@pytest.fixture
def schema(new_schema: NewSchema) -> str:
    """A fresh schema name, dropped after the test."""
    return new_schema()


@pytest.mark.asyncio
async def test_concurrent_opens_create_the_schema_once(schema: str) -> None:
    """Several workers opening a new schema at once all succeed and share one set of tables."""
    opened: list[PostgresStore] = []

    async def open_one() -> None:
        opened.append(await PostgresStore.open(postgres_url(), schema=schema))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(open_one)
        await opened[0].add(make_trials(1))
        assert [len(await store.list()) for store in opened] == [1, 1, 1, 1]
    finally:
        for store in opened:
            await store.aclose()


@pytest.mark.asyncio
async def test_workers_on_separate_pools_never_share(schema: str) -> None:
    """Workers with their own connection pools never reserve the same trial twice."""
    url = f"{postgres_url()}?schema={schema}"
    stores = [await open_store(url) for _ in range(3)]
    seen: list[str] = []

    async def work(index: int) -> None:
        store = stores[index % 3]
        while (lease := await store.reserve(f"w{index}")) is not None:
            seen.append(lease.trial_id)
            await store.finish(lease, outcome(lease))

    try:
        await stores[0].add(make_trials(90))
        async with anyio.create_task_group() as tg:
            for index in range(9):
                tg.start_soon(work, index)
        assert sorted(seen) == sorted(t.id for t in make_trials(90))
        assert (await stores[1].counts())[TrialStatus.COMPLETED] == 90
    finally:
        for store in stores:
            await store.aclose()


@pytest.mark.asyncio
async def test_store_on_a_callers_pool(schema: str) -> None:
    """A store opened on the caller's pool leaves the pool open when it closes."""
    pool = await asyncpg.create_pool(postgres_url(), min_size=1, max_size=2)
    try:
        async with await PostgresStore.open(pool, schema=schema) as store:
            await store.add(make_trials(2))
        async with pool.acquire() as conn:
            count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".trials')
        assert count == 2
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_newer_schema_is_refused(schema: str) -> None:
    """A schema written by a newer library version is refused rather than misread."""
    async with await PostgresStore.open(postgres_url(), schema=schema):
        pass
    conn = await asyncpg.connect(postgres_url())
    try:
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 99')
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="newer"):
        await PostgresStore.open(postgres_url(), schema=schema)


@pytest.mark.asyncio
async def test_bad_schema_name_is_refused() -> None:
    """A schema name that is not a plain lower-case SQL name is a ValueError."""
    with pytest.raises(ValueError, match="schema"):
        await PostgresStore.open(f"{postgres_url()}?schema=x%22%3B%20DROP")


@pytest.mark.asyncio
async def test_unreachable_server_is_a_store_error() -> None:
    """A server that cannot be reached is a StoreError, not a driver error."""
    postgres_url()
    with pytest.raises(StoreError, match="connect"):
        await PostgresStore.open("postgresql://postgres@127.0.0.1:1/test")


@pytest.mark.asyncio
async def test_reserve_picks_through_the_pending_index(schema: str) -> None:
    """With most trials finished, the reserve query reads the partial index of pending trials."""
    async with await PostgresStore.open(postgres_url(), schema=schema) as store:
        await store.add(make_trials(3000))
    conn = await asyncpg.connect(postgres_url())
    try:
        await conn.execute(f"UPDATE {schema}.trials SET status = 'completed' WHERE seq <= 2900")
        await conn.execute(f"ANALYZE {schema}.trials")
        pick = PICK.format(s=schema).replace("$4::boolean", "true")  # a busy worker's pick:
        pick = pick.replace("$6::boolean", "false").replace("$3::text[]", "ARRAY[]::text[]")
        # the plan PostgreSQL keeps for any number of trials asked for, not one for 1 alone
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE pick (integer) AS {pick.replace('$7::integer', '$1')}")
        plan = await conn.fetch("EXPLAIN EXECUTE pick (1)")
    finally:
        await conn.close()
    assert "trials_pending" in "\n".join(row[0] for row in plan)


@pytest.mark.asyncio
async def test_a_store_made_by_the_previous_code_opens(schema: str) -> None:
    """A version-1 schema (the previous release's SQL) gains the new column and table in place."""
    from async_consumer._experiment import Experiment

    async with postgres_of_version(schema, 1) as conn:
        await conn.execute(
            f"""INSERT INTO "{schema}".trials (id, trial, status)
            VALUES ('old', '{{"id": "old", "params": {{"x": 1}}}}', 'interrupted')"""
        )
    async with await PostgresStore.open(postgres_url(), schema=schema) as store:
        lease = await store.reserve("w")
        assert lease is not None and lease.trial_id == "old"
        await store.finish(lease, outcome(lease), hold=10)
        assert await store.add_experiment(Experiment(name="e", command=("x",)))
        assert (await store.counts(["old"]))[TrialStatus.COMPLETED] == 1


@pytest.mark.asyncio
async def test_store_leaves_no_prepared_statement_on_its_connection(schema: str) -> None:
    """
    Every call leaves nothing on the server connection once it is done (PgBouncer in
    transaction mode hands the connection to another client next), and each query is sent in
    one round trip: a call after the first ones of its kind prepares nothing.
    """
    store = await PostgresStore.open(postgres_url(), schema=schema, max_connections=1)
    async with store:
        lease = await first_lease(store, 3)
        assert await store.heartbeat_many([lease]) == []
        await store.finish(lease, outcome(lease))
        assert await store.reclaim_stale(60.0) == []
        async with store._pool.acquire() as conn:
            prepared = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
            assert prepared == 0
            # the queries seen before are described already: one round trip each from now on
            described = len(conn._described)
        second = await store.reserve("w")
        assert second is not None
        assert await store.heartbeat_many([second]) == []
        async with store._pool.acquire() as conn:
            assert len(conn._described) == described
