"""Open any store from a URL (this module imports the stores; they never import it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._protocol import TrialStore
from ._rules import DEFAULT_MAX_LOST
from .sqlite import SQLiteStore, path_from_url

__all__ = ["open_store", "store_from_url"]


async def open_store(url: str, *, max_lost: int = DEFAULT_MAX_LOST) -> TrialStore:
    """
    Open the store a URL names; the caller must close it (``aclose`` or ``async with``).

    Args:
        url: ``memory:``, ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or
            ``postgresql://user@host:port/database`` (optionally ``?schema=name`` and
            ``?pool_size=N``).
        max_lost: how many times a trial may lose its lease before it is marked broken.

    Raises:
        ValueError: the URL's scheme is not one of these, or asyncpg is missing for a
            ``postgresql://`` one (the message says what to install).
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "memory":
        from .memory import MemoryStore  # for tests: the command's start-up does without it

        return MemoryStore(max_lost=max_lost)
    if scheme == "sqlite":
        return SQLiteStore(path_from_url(url), max_lost=max_lost)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore  # asyncpg is optional: imported when asked for
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            msg = f"{scheme}:// stores need asyncpg: pip install 'async-consumer[postgres]'"
            raise ValueError(msg) from exc

        return await PostgresStore.open(url, max_lost=max_lost)
    if ":" not in url:  # a path: its file was meant (sqlite:////abs for an absolute one)
        msg = f"store {url!r} is not a URL: for a SQLite file there, give sqlite:///{url}"
        raise ValueError(msg)
    msg = f"unknown store URL scheme {scheme!r}: expected memory:, sqlite:/// or postgresql://"
    raise ValueError(msg)


@asynccontextmanager
async def store_from_url(
    url: str, *, max_lost: int = DEFAULT_MAX_LOST
) -> AsyncIterator[TrialStore]:
    """
    Open the store a URL names for the duration of an ``async with`` block.

    Takes the same arguments as :func:`open_store`.
    """
    store = await open_store(url, max_lost=max_lost)
    async with store:
        yield store
