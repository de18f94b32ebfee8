"""A SQLite store's file: opened in WAL mode and migrated; which errors are worth a retry."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .._errors import StoreError, StoreUnavailable
from . import _sqlite_sql as queries

__all__ = ["connect", "error", "is_busy", "path_from_url", "transaction"]

_T = TypeVar("_T")

_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
# worth a retry later (by a worker's retrying store): busy or locked for long, or an I/O error
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


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether another connection holds the lock (worth trying again in a moment)."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in _BUSY


def error(exc: sqlite3.Error, what: str) -> StoreError:
    """A driver error as ours: ``StoreUnavailable`` when it is worth a retry."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    kind = StoreUnavailable if code in _TRANSIENT else StoreError
    return kind(f"{what}: {exc}")


def transaction(conn: sqlite3.Connection, begin: str, work: Callable[[], _T]) -> _T:
    """Run ``work()`` in a transaction begun with ``begin``: committed, or rolled back."""
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
        for statement in _statements(queries.MIGRATIONS[number]):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?)", (number + 1,))


def _statements(script: str) -> Iterator[str]:
    """The statements of a script: split at each semicolon that ends one (not in a trigger)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the file (WAL, ``synchronous = NORMAL``) and bring its schema up to date."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # opening happens once per worker, so a long wait for a concurrent opener is acceptable
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        transaction(conn, "BEGIN IMMEDIATE", lambda: _migrate(conn))
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn
