"""Fixtures of the fault tests: stores shared by several connections, like workers' are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from async_consumer.stores import TrialStore, open_store

OpenStore = Callable[[], Awaitable[TrialStore]]


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
