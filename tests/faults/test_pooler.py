"""Workers through PgBouncer in transaction mode, and a database that refuses connections."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from async_consumer import Trial
from async_consumer._cli.main import main
from async_consumer._errors import StoreError, StoreUnavailable

from ..bouncer import pgbouncer_url, running_pgbouncer
from ..conftest import NewSchema, cli, postgres_url, wait_until_sync
from .conftest import completed_once
from .sync_store import add_trials, stored_trials

# a shell trial (about a millisecond): the pooler and the store are what is tested
SCRIPT = 'echo "$ASYNC_CONSUMER_ATTEMPT" >"$ORION_RESULTS_PATH"'


def worker(url: str, tmp_path: Path, name: str, *options: str) -> subprocess.Popen[str]:
    """An ``async-consumer worker`` process on ``url``, its stderr piped."""
    argv = cli("worker", "--store", url, "--grace", "0.5", "--store-outage-limit")
    argv += ["120", "--base-dir", str(tmp_path / name), "--code-change", "ignore"]
    argv += [*options]
    argv += ["--", "sh", "-c", SCRIPT]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def with_query(url: str, **params: str) -> str:
    """``url`` with these parameters added to its query."""
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def _numbered(count: int) -> list[Trial]:
    return [Trial(id=f"t{i:04d}") for i in range(count)]


def psql(url: str, command: str) -> list[list[str]]:
    """The rows of a command, through psql (PgBouncer's admin console takes simple queries only)."""
    parts = urlsplit(url)
    done = subprocess.run(
        [
            "psql",
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
            "-d",
            parts.path.lstrip("/"),
            "-AtF",
            "\t",
            "-c",
            command,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split("\t") for line in done.stdout.splitlines()]


class ClientSampler:
    """
    The most connections each application (a worker) held at once, in a thread: as PostgreSQL
    counts them (``pg_stat_activity``) or, through PgBouncer, as PgBouncer does (``SHOW CLIENTS``).
    """

    def __init__(self, url: str, prefix: str, *, pooled: bool) -> None:
        self.prefix = prefix
        if pooled:
            self.url = urlsplit(url)._replace(path="/pgbouncer").geturl()
            self.command = "SHOW CLIENTS"
        else:
            self.url = urlsplit(url)._replace(query="").geturl()
            self.command = "SELECT application_name FROM pg_stat_activity"
        self.most: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rows = psql(self.url, self.command)
            now = Counter(row[-1] for row in rows if row[-1].startswith(self.prefix))
            for name, count in now.items():
                self.most[name] = max(self.most[name], count)
            self.samples += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgres", "pgbouncer"])
def test_workers_hold_two_connections_each_whatever_their_lanes(
    kind: str, tmp_path: Path, new_schema: NewSchema
) -> None:
    """
    4 workers x -j 8, on PostgreSQL or through PgBouncer in transaction mode (with PgBouncer's
    URL and nothing else): every trial completes once, and no worker holds more than 2
    connections.
    """
    base = pgbouncer_url() if kind == "pgbouncer" else postgres_url()
    schema = new_schema()
    url = f"{base}?schema={schema}"
    count = 96
    add_trials(url, _numbered(count))
    sampler = ClientSampler(base, f"ac_{schema}", pooled=kind == "pgbouncer")
    try:
        workers = [
            worker(
                with_query(url, application_name=f"ac_{schema}_{i}"), tmp_path, f"w{i}", "-j", "8"
            )
            for i in range(4)
        ]
        errors = [w.communicate(timeout=300)[1] for w in workers]
        trials = stored_trials(url)
    finally:
        sampler.stop()
    for process, err in zip(workers, errors, strict=True):
        assert process.returncode == 0, err
        assert "Traceback" not in err
    completed_once(trials, count)
    print(f"{kind}: most connections a worker held {dict(sampler.most)}")  # noqa: T201
    assert sampler.samples > 0
    assert all(0 < most <= 2 for most in sampler.most.values()), sampler.most


def test_a_database_that_does_not_exist_through_pgbouncer_ends_the_worker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PgBouncer passes on the server's refusal of a missing database: one line, no retrying."""
    pytest.importorskip("asyncpg")
    parts = urlsplit(pgbouncer_url())
    url = parts._replace(path=f"/no_such_database_{uuid.uuid4().hex[:8]}").geturl()
    argv = ["worker", "--store", url, "--code-change", "ignore", "--", "true"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to the PostgreSQL store: ProtocolViolationError")
    assert "does not exist" in err
    assert err.count("\n") == 1 and "unreachable" not in err


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("no more connections allowed (max_client_conn)", True),
        ("pgbouncer cannot connect to server", True),
        ("server login has been failing, try again later (server_login_retry)", True),
        ("sorry, too many clients already", True),
        ('too many connections for role "someone"', True),
        ("the database system is shutting down", True),
        ("query_wait_timeout", True),
        ("server conn crashed?", True),
        ('database "nosuch" does not exist', False),
        ('"trust" authentication failed', False),
        ("password authentication failed", False),
        ("no such database: nosuch", False),
        ("unsupported startup parameter: search_path", False),
    ],
    ids=lambda value: str(value)[:40],
)
def test_pgbouncer_errors_worth_a_retry(message: str, transient: bool) -> None:
    """PgBouncer's errors (all SQLSTATE 08P01) are outages unless no retry can mend them."""
    asyncpg = pytest.importorskip("asyncpg")
    from async_consumer.stores._postgres_connection import translate

    error = translate(asyncpg.exceptions.ProtocolViolationError(message), "PostgreSQL store")
    assert isinstance(error, StoreError)
    assert isinstance(error, StoreUnavailable) is transient


class Refusal:
    """A database that refuses every new connection while ``hold`` holds them all."""

    def __init__(self, url: str, slots: int) -> None:
        self.url, self.slots = url, slots

    async def _connect(self) -> Any:
        """A connection, once the backends of the connections closed before it have left."""
        import asyncpg

        while True:
            try:
                return await asyncpg.connect(self.url)
            except asyncpg.TooManyConnectionsError:
                await anyio.sleep(0.05)  # a closed connection's backend leaves a moment later

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Take every connection the refusal allows, until the block ends."""

        holding, release = threading.Event(), threading.Event()
        failed: list[BaseException] = []

        async def keep() -> None:
            conns: list[Any] = []
            try:
                with anyio.fail_after(60):  # a bound that only ends a failing test
                    while len(conns) < self.slots:
                        conns.append(await self._connect())
            except Exception as exc:  # noqa: BLE001 - the test fails with it below
                failed.append(exc)
            holding.set()
            while not release.is_set():
                await anyio.sleep(0.02)
            for conn in conns:
                await conn.close()

        thread = threading.Thread(target=anyio.run, args=(keep,), daemon=True)
        thread.start()
        holding.wait(timeout=60)
        assert not failed, failed
        try:
            yield
        finally:
            release.set()
            thread.join(timeout=60)


@contextmanager
def limited_role(server: str) -> Iterator[str]:
    """A role of the test's own that PostgreSQL lets log in twice at once, dropped after."""
    import asyncpg

    role = f"ac_limited_{uuid.uuid4().hex[:10]}"

    async def run(*statements: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    database = urlsplit(server).path.lstrip("/")
    anyio.run(
        run,
        f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2",
        f'GRANT CREATE ON DATABASE "{database}" TO {role}',
    )
    try:
        yield role
    finally:
        anyio.run(run, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@contextmanager
def refusing(kind: str) -> Iterator[tuple[str, str, Refusal]]:
    """
    A store URL whose database refuses connections while the refusal holds them, and a URL
    for the test's own calls, that leaves PgBouncer holding no server connection.
    """
    server = postgres_url()
    parts = urlsplit(server)
    if kind == "pgbouncer":  # PgBouncer's own limit: max_client_conn
        with running_pgbouncer(server, pool_size=4, max_client_conn=2) as bouncer:
            yield bouncer.url, bouncer.url, Refusal(bouncer.url, 2)
        return
    with limited_role(server) as role:  # PostgreSQL's own: too many connections for role
        direct = parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}").geturl()
        if kind == "postgres":
            yield direct, direct, Refusal(direct, 2)
            return
        # PgBouncer passes the server's refusal on (idle clients of PgBouncer would hold no
        # server connection: the role's two are taken on the server itself)
        with running_pgbouncer(server, pool_size=4, users=[role]) as bouncer:
            url = urlsplit(bouncer.url)._replace(netloc=f"{role}@127.0.0.1:{bouncer.port}")
            yield url.geturl(), direct, Refusal(direct, 2)


def _lines_of(process: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        lines.extend(iter(process.stderr.readline, ""))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", id="postgres-too-many-connections"),
        pytest.param("pgbouncer", id="pgbouncer-max-client-conn"),
        pytest.param("postgres-through-pgbouncer", id="postgres-refusing-pgbouncer"),
    ],
)
def test_a_database_refusing_connections_is_an_outage_waited_out(
    kind: str, tmp_path: Path, new_schema: NewSchema
) -> None:
    """
    While the database (or PgBouncer) refuses every new connection, a worker waits with
    backoff and says so once; when it accepts them again, the worker runs every trial.
    """
    with refusing(kind) as (url, own, refusal):
        schema = new_schema()
        store = f"{url}?schema={schema}"
        count = 12
        add_trials(f"{own}?schema={schema}", _numbered(count))
        with refusal.hold():
            process = worker(store, tmp_path, "w", "-j", "4")
            lines, reader = _lines_of(process)
            wait_until_sync(
                lambda: any("store unreachable" in line for line in lines),
                "the worker to say the store is unreachable",
            )
        process.wait(timeout=120)
        reader.join(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
        trials = stored_trials(store)
    err = "".join(lines)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert err.count("store unreachable") == 1, err
    assert err.count("store reachable again") == 1, err
    completed_once(trials, count)
