"""The PostgreSQL store's connection: its URL's own parameters, and which driver errors pass."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from .._errors import StoreBusy, StoreError, StoreUnavailable

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DRIVER_ERRORS",
    "STATEMENT_CACHE_SIZE",
    "OneTripConnection",
    "connect_pool",
    "split_url",
    "translate",
]

DEFAULT_POOL_SIZE = 2
"""Connections a store keeps at most: a worker's reservations, heartbeats and finishes share
them (a query takes a millisecond or two), so many workers fit under ``max_connections``."""

STATEMENT_CACHE_SIZE = 0
"""No named prepared statement outlives its transaction, so the same URL works through a pooler
in transaction mode (PgBouncer 1.18 sends each transaction to any of its server connections,
where a statement prepared on another one does not exist). asyncpg then parses each query in the
same round trip that runs it; ``benchmarks/store.py --cache`` measures what that costs."""

_KEPT_STATEMENTS = 256
"""How many queries' descriptions a connection keeps (the store has about 40 a schema)."""


class OneTripConnection(asyncpg.Connection):  # type: ignore[misc]
    """
    An asyncpg connection that runs each query in one round trip without its statement cache.

    Without the cache, asyncpg describes a query in a round trip of its own before it runs it,
    and ends that round trip with Flush, not Sync: a pooler in transaction mode keeps the
    server connection for the client across both round trips and everything the client does
    in between: on a busy machine, slow clients hold the pool's server connections while the
    others queue, and a direct connection pays a round trip more a query. This
    connection keeps each query's description (its unnamed statement, which asyncpg has marked
    to be parsed again with every run): a query is sent once as Parse, Bind, Execute and Sync,
    and nothing is left on the server after it.
    """

    __slots__ = ("_described",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._described: dict[tuple[object, ...], Any] = {}

    async def _get_statement(
        self,
        query: str,
        timeout: float | None,  # noqa: ASYNC109 - asyncpg's own signature
        *,
        named: object = False,
        **kwargs: Any,
    ) -> Any:
        if named or not kwargs.get("use_cache", True):
            return await super()._get_statement(query, timeout, named=named, **kwargs)
        key = (query, kwargs.get("record_class"), kwargs.get("ignore_custom_codec", False))
        statement = self._described.get(key)
        if statement is None or statement.closed:
            statement = await super()._get_statement(query, timeout, named=named, **kwargs)
            if statement.name == "" and not statement.prepared:  # parsed again with each run
                if len(self._described) >= _KEPT_STATEMENTS:
                    self._described.clear()
                self._described[key] = statement
        return statement

    def _drop_local_statement_cache(self) -> None:
        self._described.clear()
        super()._drop_local_statement_cache()


DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)
"""What the driver raises; each is translated into a ``StoreError``."""

_TRANSIENT = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or does not exist
    asyncpg.exceptions.OperatorInterventionError,  # 57: terminated, shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.InternalClientError,  # the driver lost track of a dying connection
    OSError,  # refused, reset, timed out
)

_POOLER_REFUSALS = (
    "does not exist",  # the server's answer to a login, passed on: no such database or role
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
    "no such database",
    "no such user",
    "login rejected",
    "not allowed",
    "unsupported startup parameter",
    "SSL required",
)
"""What PgBouncer says, always with SQLSTATE 08P01 (a protocol violation, of class 08), when no
retry can mend it; its other errors (``no more connections allowed (max_client_conn)``,
``pgbouncer cannot connect to server``, ``server login has been failing``, a server's ``too
many clients`` or ``shutting down`` passed on, ``query_wait_timeout``, ``server conn crashed?``)
are outages."""


def translate(exc: Exception, what: str) -> StoreError:
    """A driver error as ours: ``StoreUnavailable`` when a retry may mend it."""
    transient = isinstance(exc, _TRANSIENT) or (
        isinstance(exc, asyncpg.InterfaceError)
        and not isinstance(exc, asyncpg.exceptions.ClientConfigurationError)
    )
    if isinstance(exc, asyncpg.exceptions.ProtocolViolationError):
        transient = not any(refusal in str(exc) for refusal in _POOLER_REFUSALS)
    if not transient:
        kind: type[StoreError] = StoreError
    elif isinstance(exc, asyncpg.PostgresError):  # the server (or PgBouncer) answered
        kind = StoreBusy
    else:
        kind = StoreUnavailable
    return kind(f"{what}: {type(exc).__name__}: {exc}")


def split_url(url: str) -> tuple[str, str | None, int | None]:
    """Take our parameters (``schema``, ``pool_size``) out of a URL; asyncpg would send them on."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in ("schema", "pool_size")}
    rest = urlencode([(key, value) for key, value in query if key not in ours])
    size = ours.get("pool_size")
    if size is not None and not (size.isdigit() and int(size) >= 1):
        msg = f"pool_size must be a whole number of 1 or more, not {size!r}"
        raise ValueError(msg)
    return urlunsplit(parts._replace(query=rest)), ours.get("schema"), int(size) if size else None


async def connect_pool(url: str, max_connections: int) -> Any:
    """An asyncpg pool of at most ``max_connections`` to ``url`` (errors translated)."""
    try:
        # min_size 0: no background reconnection (asyncpg logs its failures with a traceback)
        pool = asyncpg.create_pool(
            url,
            min_size=0,
            max_size=max_connections,
            reset=_keep_session,
            statement_cache_size=STATEMENT_CACHE_SIZE,
            connection_class=OneTripConnection,
        )
        return await pool
    except DRIVER_ERRORS as exc:
        raise translate(exc, "cannot connect to the PostgreSQL store") from exc


async def _keep_session(conn: Any) -> None:
    """
    Skip asyncpg's ``RESET ALL`` round trip on every release: the store sets no session state.

    (Its one lock is transaction-scoped; asyncpg still rolls back an open transaction.)
    """
