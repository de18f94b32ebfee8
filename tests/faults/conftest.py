"""Fixtures of the fault tests: stores shared by several connections, like workers' are."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from async_consumer import Consumer, Status, StoredTrial, TrialStatus
from async_consumer._models import Attempt
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


@contextmanager
def polling(url: str, query: str, application: str, every: float) -> Iterator[list[int]]:
    """
    Run ``query`` (its ``$1`` the test's ``application`` name, its answer a number) on the
    PostgreSQL server at ``url`` every ``every`` seconds, in a thread, until the block is left;
    the list holds the answers so far.
    """
    answers: list[int] = []
    stop = threading.Event()

    async def loop() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            while not stop.is_set():
                answers.append(await conn.fetchval(query, application))
                await asyncio.sleep(every)
        finally:
            await conn.close()

    thread = threading.Thread(target=lambda: asyncio.run(loop()), daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=10)


def worker_consumer(
    command: Sequence[str], base_dir: Path, store: TrialStore, heartbeat: float, **options: Any
) -> Consumer:
    """
    A consumer of ``command`` for a worker on ``store``, beating every ``heartbeat`` seconds,
    with half a second's grace and the tests' scripts' code changes ignored; ``options`` are
    the consumer's other arguments.
    """
    return Consumer(
        command,
        base_dir=base_dir,
        store=store,
        heartbeat=heartbeat,
        grace=0.5,
        code_change="ignore",
        **options,
    )


def completed_once(trials: Sequence[StoredTrial], count: int) -> list[tuple[StoredTrial, Attempt]]:
    """
    Check that all ``count`` trials completed, each by exactly one attempt, its last; each
    trial with that attempt, for the test's own checks of it.
    """
    assert len(trials) == count
    found = []
    for trial in trials:
        assert trial.status is TrialStatus.COMPLETED, trial.id
        done = [a for a in trial.attempts if a.outcome and a.outcome.status is Status.COMPLETED]
        assert len(done) == 1, trial.id
        assert done[0] is trial.attempts[-1], trial.id
        found.append((trial, done[0]))
    return found


@contextmanager
def reaped(processes: list[subprocess.Popen[bytes]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """
    The processes, each killed (if still running) and reaped on leaving: a test that fails
    half-way leaves no worker behind to become another test's zombie.
    """
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


def assert_own_result(
    trial: StoredTrial, attempt: Attempt, ran: Collection[tuple[str, int, int]]
) -> None:
    """
    The accepted result is a run's own, its objective the run's pid (as ``ran`` logs
    ``(trial, attempt, pid)``): the attempt's own run, or an earlier attempt's whose result the
    store had not taken (its worker was killed, or its lease went to another meanwhile), completed
    from its files and not run again.
    """
    outcome = attempt.outcome
    assert outcome is not None
    earlier = re.match(r"completed from attempt (\d+)'s results", outcome.message)
    if earlier is None:
        assert (trial.id, attempt.number, outcome.pid) in ran
        assert outcome.objective == outcome.pid
    else:
        assert outcome.pid is None
        assert int(earlier[1]) < attempt.number
        assert (trial.id, int(earlier[1]), outcome.objective) in ran


@contextmanager
def full_tmpfs(mount: Path, size: str, free: int = 0) -> Iterator[Path]:
    """
    A tmpfs of ``size`` mounted at ``mount``, filled by a file ``filler`` until only ``free``
    bytes are left; unmounted after. Where mounting is not allowed the test is skipped, but
    in CI (which runs as root, and can mount) it fails.
    """
    mount.mkdir()
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        problem = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    try:
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError, match="No space left"):
                _write_forever(fd)
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - free))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _write_forever(fd: int) -> None:
    while True:
        os.write(fd, b"x" * 4096)
