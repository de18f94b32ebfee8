"""
Trial stores: where trials wait, are leased to workers, and keep every attempt.

``MemoryStore`` for tests and one process, ``SQLiteStore`` (the default) for the workers of one
host, ``PostgresStore`` for workers on many hosts (asyncio only: its driver, asyncpg, does not run
on trio). ``open_store`` opens any of them from a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._open import open_store as open_store
from ._open import store_from_url as store_from_url
from ._protocol import Finish as Finish
from ._protocol import IntermediateValue as IntermediateValue
from ._protocol import Reservation as Reservation
from ._protocol import TrialStore as TrialStore
from ._retrying import Outage as Outage
from ._retrying import RetryingStore as RetryingStore
from .sqlite import SQLiteStore as SQLiteStore

if TYPE_CHECKING:
    from .memory import MemoryStore as MemoryStore
    from .postgres import PostgresStore as PostgresStore

__all__ = [
    "Finish",
    "IntermediateValue",
    "MemoryStore",
    "Outage",
    "PostgresStore",
    "Reservation",
    "RetryingStore",
    "SQLiteStore",
    "TrialStore",
    "open_store",
    "store_from_url",
]


def __getattr__(name: str) -> object:
    # the memory store is for tests (the command's start-up does without it)
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    # asyncpg is an optional dependency: import the PostgreSQL store only when it is asked for
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
