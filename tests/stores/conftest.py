"""Fixtures for the store tests: the same contract suite runs on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from async_consumer._models import Lease, Outcome, Status, Trial
from async_consumer.stores import MemoryStore, PostgresStore, SQLiteStore, TrialStore

from ..bouncer import pgbouncer_url
from ..conftest import NewSchema, postgres_url

MakeStore = Callable[..., Awaitable[TrialStore]]
KINDS = ["memory", "sqlite", "postgres", "pgbouncer"]
"""``pgbouncer``: the PostgreSQL store through PgBouncer in transaction mode, with the URL as a
user writes it (PgBouncer's port, nothing else)."""


def make_trials(count: int, prefix: str = "t") -> list[Trial]:
    """Trials named prefix0, prefix1, ... with one parameter each."""
    return [Trial(id=f"{prefix}{i}", params={"x": i}) for i in range(count)]


def outcome(lease: Lease, status: Status = Status.COMPLETED, **fields: object) -> Outcome:
    """An outcome of the leased attempt."""
    attempt = lease.trial.attempt
    return Outcome.model_validate(
        {"trial_id": lease.trial_id, "attempt": attempt, "status": status, **fields}
    )


@pytest_asyncio.fixture(params=KINDS)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, new_schema: NewSchema
) -> AsyncIterator[MakeStore]:
    """Opens fresh, isolated stores of one kind; closes them after the test."""
    kind: str = request.param
    url = {"postgres": postgres_url, "pgbouncer": pgbouncer_url}.get(kind, str)()
    opened: list[TrialStore] = []

    async def make(max_lost: int = 3) -> TrialStore:  # the contract tests were written for 3
        store: TrialStore
        if kind == "memory":
            store = MemoryStore(max_lost=max_lost)
        elif kind == "sqlite":
            store = SQLiteStore(tmp_path / f"store{len(opened)}.db", max_lost=max_lost)
        else:
            store = await PostgresStore.open(url, schema=new_schema(), max_lost=max_lost)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> TrialStore:
    """A fresh store of each kind."""
    return await make_store()
