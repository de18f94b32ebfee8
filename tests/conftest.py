"""
The tests' kit: real child processes written as small Python scripts, waits that fail the test
when what they wait for never comes, fresh stores (PostgreSQL schemas dropped after the test),
and a store that fails on demand.
"""

from __future__ import annotations

import builtins
import inspect
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_consumer import Consumer, Trial, install_child_watcher
from async_consumer._errors import LeaseLost, StoreError, StoreUnavailable
from async_consumer._models import Lease, Outcome, TrialStatus
from async_consumer.stores import Finish, MemoryStore, Reservation

# as the command does: reap children without a thread each, keeping their resource usage
install_child_watcher()


POLL_BOUND = 180.0
"""Seconds a wait polls before it fails the test: long, so a busy machine never ends a passing
test; only a test whose condition never comes waits this long."""


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    bound: float = POLL_BOUND,
    alive: subprocess.Popen[Any] | None = None,
    every: float = 0.02,
) -> None:
    """
    Poll ``condition`` (what a script wrote, say; a coroutine function too) every ``every``
    seconds until it holds. Fail the test, naming ``what``, if ``bound`` seconds pass first,
    or at once if the process ``alive`` exits meanwhile.
    """
    deadline = anyio.current_time() + bound
    while not await _holds(condition):
        _check_waiting(what, bound, anyio.current_time() > deadline, alive)
        await anyio.sleep(every)


def wait_until_sync(
    condition: Callable[[], bool],
    what: str,
    *,
    bound: float = POLL_BOUND,
    alive: subprocess.Popen[Any] | None = None,
    every: float = 0.02,
) -> None:
    """``wait_until`` outside an event loop (``condition`` a plain function)."""
    deadline = time.monotonic() + bound
    while not condition():
        _check_waiting(what, bound, time.monotonic() > deadline, alive)
        time.sleep(every)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    answer = condition()
    return await answer if inspect.isawaitable(answer) else answer


def _check_waiting(
    what: str, bound: float, late: bool, alive: subprocess.Popen[Any] | None
) -> None:
    if alive is not None and alive.poll() is not None:
        _, err = alive.communicate()
        pytest.fail(f"waiting for {what}: the process exited ({alive.returncode}): {err!r}")
    if late:
        pytest.fail(f"gave up after {bound} s waiting for {what}")


def postgres_url() -> str:
    """The test server's URL; without one, skip the test, or fail it in CI (.ci/run sets one)."""
    url = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") or os.environ.get("ASYNC_CONSUMER_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required here: set ASYNC_CONSUMER_TEST_POSTGRES_URL")
        pytest.skip("set ASYNC_CONSUMER_TEST_POSTGRES_URL to run the PostgreSQL store tests")
    return url


async def drop_schemas(url: str, schemas: Iterable[str]) -> None:
    """Remove PostgreSQL schemas and everything in them."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


NewSchema = Callable[[], str]


@pytest.fixture
def new_schema() -> Iterator[NewSchema]:
    """
    Hands out fresh PostgreSQL schema names, each dropped with all in it after the test. The
    first one asked for skips the test without a server (fails it in CI).
    """
    made: list[str] = []

    def make() -> str:
        postgres_url()
        made.append(f"test_{uuid.uuid4().hex[:16]}")
        return made[-1]

    yield make
    if made:
        # in a thread of its own: an async test's event loop may still be this thread's
        with ThreadPoolExecutor(1) as apart:
            apart.submit(anyio.run, drop_schemas, postgres_url(), made).result()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, new_schema: NewSchema) -> str:
    """
    The URL of a fresh, empty store shared by a test's workers (PostgreSQL: a schema of its
    own, whose connections are named after it).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    schema = new_schema()
    return f"{postgres_url()}?schema={schema}&application_name=async_consumer_{schema}"


class Flaky(MemoryStore):
    """A memory store whose next calls fail as an unreachable store's do."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0  # calls still to fail
        self.error: StoreError = StoreUnavailable("connection refused")
        self.commit_then_fail = False  # the next finish (or batch) commits, then its answer is lost
        self.batches: list[list[str]] = []  # the trials of each finish_many that got through

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error

    def _lose_the_answer(self) -> None:
        if self.commit_then_fail:
            self.commit_then_fail = False
            msg = "connection reset after the commit"
            raise StoreUnavailable(msg)

    async def reserve_many(
        self, worker: str, n: int, request: Reservation = Reservation()
    ) -> builtins.list[Lease]:
        self._maybe_fail()
        return await super().reserve_many(worker, n, request)

    async def counts(self, ids: Collection[str] | None = None) -> dict[TrialStatus, int]:
        self._maybe_fail()
        return await super().counts(ids)

    async def heartbeat_many(self, leases: Sequence[Lease]) -> builtins.list[str]:
        self._maybe_fail()
        return await super().heartbeat_many(leases)

    async def finish(
        self, lease: Lease, outcome: Outcome, *, requeue: bool = False, hold: float = 0.0
    ) -> TrialStatus:
        self._maybe_fail()
        status = await super().finish(lease, outcome, requeue=requeue, hold=hold)
        self._lose_the_answer()
        return status

    async def finish_many(self, items: Sequence[Finish]) -> builtins.list[TrialStatus | LeaseLost]:
        self._maybe_fail()
        answers = await super().finish_many(items)
        self.batches.append([item.lease.trial_id for item in items])
        self._lose_the_answer()
        return answers


LOSS_CURVE = """
with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as metrics:
    for step in range(3 if hopeless else 5):
        metrics.write(json.dumps({'step': step, 'loss': 1 / (step + 1) + 10 * hopeless}) + '\\n')
        metrics.flush()
if hopeless:
    time.sleep(600)
json.dump([{'name': 'loss', 'type': 'objective', 'value': 0.2}], open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""
"""
The end of a trial's script that reports a loss curve (``json``, ``os``, ``time`` imported,
``hopeless`` set): a good trial, 1/(step+1) for 5 steps, then it completes; a hopeless one, 10
more at each of 3 steps, then it waits to be stopped (it never ends on its own).
"""

WRITE_RESULT = (
    "import json, os; json.dump([{'name': 'objective', 'type': 'objective', 'value': 1.5}], "
    "open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def python(code: str) -> list[str]:
    """A command that runs ``code`` with this interpreter."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def cli(*args: str) -> list[str]:
    """A command that runs this package's command line with ``args``, in a child process."""
    return [sys.executable, "-m", "async_consumer._cli", *args]


def store_here(tmp_path: Path) -> str:
    """The URL of the SQLite store that :func:`run_here` uses in ``tmp_path``."""
    return f"sqlite:///{tmp_path}/store.db"


def run_here(tmp_path: Path, *args: str) -> int:
    """``async-consumer run ARGS`` through ``main``, its store and trials in ``tmp_path``."""
    from async_consumer._cli.main import main

    store = store_here(tmp_path)
    return main(["run", "--store", store, "--base-dir", str(tmp_path / "trials"), *args])


def installed(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed ``async-consumer`` entry point with ``args``; its output as text."""
    exe = Path(sys.executable).with_name("async-consumer")  # this interpreter's, else PATH's
    if not exe.exists():
        exe = Path(shutil.which("async-consumer") or exe)
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def is_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def process_table() -> Iterator[tuple[int, bytes, int]]:
    """(pid, state letter, parent pid) of every process, read from /proc."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            yield int(entry.name), fields[0], int(fields[1])


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (zombies excluded)."""
    return [child for child, state, parent in process_table() if parent == pid and state != b"Z"]


ConsumerFactory = Callable[..., Consumer]
RunScript = Callable[..., Awaitable[Outcome]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """
    Run each ``@pytest.mark.anyio`` test once on asyncio and once on trio.

    anyio's pytest plugin runs only the tests marked ``anyio`` (its auto mode stays off, so it
    never takes over pytest-asyncio's ``@pytest.mark.asyncio`` tests, and the stores' tests stay
    on asyncio, which their drivers need).
    """
    return str(request.param)


@pytest.fixture
def make_consumer(tmp_path: Path) -> ConsumerFactory:
    """Build a consumer whose trial directories live in the test's temporary directory."""

    def make(command: list[str], **kwargs: Any) -> Consumer:
        kwargs.setdefault("base_dir", tmp_path / "trials")
        kwargs.setdefault("grace", 1.0)
        return Consumer(command, **kwargs)

    return make


@pytest.fixture
def run_script(make_consumer: ConsumerFactory) -> RunScript:
    """
    Run one trial ``t`` of the Python ``code`` (its extra ``args`` after it), on a consumer made
    by ``make_consumer`` with the keyword arguments given, and return its outcome.
    """

    async def run(code: str, *args: str, **kwargs: Any) -> Outcome:
        return await make_consumer([*python(code), *args], **kwargs).run(Trial(id="t"))

    return run


@pytest.fixture(autouse=True)
def _reset_library_logger() -> Iterator[None]:
    """Undo the logging set-up that the CLI's ``main`` does, so caplog sees every record."""
    yield
    logger = logging.getLogger("async_consumer")
    logger.handlers[:] = [logging.NullHandler()]  # as the package leaves it
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def tmux() -> Iterator[str]:
    """A detached tmux session, 110 columns by 40 lines, killed after the test."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    name = f"ac-{uuid.uuid4().hex[:8]}"
    argv = ["tmux", "new-session", "-d", "-s", name, "-x", "110", "-y", "40"]
    subprocess.run([*argv, "bash --norc --noprofile"], check=True)
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def screen(session: str) -> list[str]:
    """Every line of the tmux pane, scrollback included, as the user would read it."""
    argv = ["tmux", "capture-pane", "-p", "-J", "-t", session, "-S", "-"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def type_command(session: str, command: str) -> None:
    """Type ``command`` into the tmux session and press Enter, as the user would."""
    subprocess.run(["tmux", "send-keys", "-t", session, command, "Enter"], check=True)
