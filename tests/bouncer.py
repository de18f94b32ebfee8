"""PgBouncer for the tests: the shared one CI starts, or one of a test's own that it may restart."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REQUIRE = "ASYNC_CONSUMER_REQUIRE_PGBOUNCER"
"""Set (as ``.ci/run`` does, or ``CI``): a missing PgBouncer fails the tests instead of skipping."""


def _missing(problem: str) -> None:
    if os.environ.get("CI") or os.environ.get(REQUIRE):
        pytest.fail(f"PgBouncer is required here but {problem}; .ci/pgbouncer-up starts one")
    pytest.skip(f"{problem}: run .ci/pgbouncer-up (as root) for PgBouncer on port 6432")


def pgbouncer_url() -> str:
    """The URL of the shared PgBouncer (transaction mode), or skip the test when none is set."""
    url = os.environ.get("ASYNC_CONSUMER_TEST_PGBOUNCER_URL")
    if not url:
        _missing("ASYNC_CONSUMER_TEST_PGBOUNCER_URL is not set")
    return str(url)


def pgbouncer_binary() -> str:
    """The ``pgbouncer`` program (Debian puts it in /usr/sbin), or skip the test without one."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        _missing("pgbouncer is not installed")
    return str(found)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bouncer:
    """A PgBouncer of the test's own, in transaction mode, in front of the test's server."""

    server: str
    """The PostgreSQL URL it pools."""
    pool_size: int
    max_client_conn: int
    directory: Path
    users: tuple[str, ...] = ()
    """Roles besides the server URL's that may log in (PgBouncer's trust still lists them)."""
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        """The URL a worker uses: the server's, at PgBouncer's port."""
        parts = urlsplit(self.server)
        return parts._replace(
            netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}"
        ).geturl()

    @property
    def admin_url(self) -> str:
        """PgBouncer's admin console (``SHOW POOLS``, ``SHOW SERVERS``)."""
        return urlsplit(self.url)._replace(path="/pgbouncer").geturl()

    def start(self) -> None:
        """Start it in the foreground of a child process, and wait until it accepts logins."""
        config = self.directory / "pgbouncer.ini"
        server = urlsplit(self.server)
        config.write_text(
            textwrap.dedent(f"""\
            [databases]
            * = host={server.hostname or "127.0.0.1"} port={server.port or 5432}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {self.port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {self.directory / "userlist.txt"}
            admin_users = {server.username or "postgres"}
            pool_mode = transaction
            default_pool_size = {self.pool_size}
            max_client_conn = {self.max_client_conn}
            server_login_retry = 1
            """)
        )
        users = (server.username or "postgres", *self.users)
        (self.directory / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        # PgBouncer refuses to run as root: it takes the postgres user's identity then
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        log = (self.directory / "pgbouncer.log").open("ab")
        self.process = subprocess.Popen(
            [pgbouncer_binary(), *user, str(config)], stdout=log, stderr=log
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30  # a bound that only ends a failing test
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.process is not None and self.process.poll() is None, self.log()
                assert time.monotonic() < deadline, self.log()
                time.sleep(0.05)  # polling the port, not ordering events

    def stop(self) -> None:
        """Shut it down at once (SIGTERM: its clients' connections are closed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        """Stop it and start it again on the same port."""
        self.stop()
        self.restarts += 1
        self.start()

    def log(self) -> str:
        """What it logged."""
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def running_pgbouncer(
    server: str,
    *,
    pool_size: int = 20,
    max_client_conn: int = 1000,
    users: Sequence[str] = (),
) -> Iterator[Bouncer]:
    """A PgBouncer of the test's own in front of ``server``, stopped (and its files removed) after."""
    pgbouncer_binary()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    directory.chmod(0o755)  # readable by the postgres user it runs as under root
    bouncer = Bouncer(server, pool_size, max_client_conn, directory, tuple(users))
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)
