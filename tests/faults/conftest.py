"""Fixtures of the fault tests: stores shared by several connections, like workers' are."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from async_consumer.stores import TrialStore, open_store

from ..stores.conftest import drop_schema, postgres_url

OpenStore = Callable[[], Awaitable[TrialStore]]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store (PostgreSQL: a schema of its own, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    schema = f"faults_{uuid.uuid4().hex[:12]}"
    base = postgres_url()
    yield f"{base}?schema={schema}&application_name=async_consumer_{schema}"
    anyio.run(drop_schema, base, schema)


@pytest_asyncio.fixture
async def connect(store_url: str) -> AsyncIterator[OpenStore]:
    """Opens connections to the test's store (each one like another process's), closed after."""
    opened: list[TrialStore] = []

    async def make() -> TrialStore:
        opened.append(await open_store(store_url))
        return opened[-1]

    yield make
    for store in opened:
        await store.aclose()
