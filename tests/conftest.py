"""Helpers shared by the tests: real child processes, written as small Python scripts."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_consumer import Consumer, install_child_watcher

# as the command does: reap children without a thread each, keeping their resource usage
install_child_watcher()


async def wait_until(condition: Callable[[], bool], bound: float = 60.0) -> None:
    """
    Poll ``condition`` (what a script wrote, say) until it holds; ``bound`` seconds only end
    the test if it fails, they order nothing.
    """
    with anyio.fail_after(bound):
        while not condition():
            await anyio.sleep(0.01)


def wait_for(condition: Callable[[], bool], bound: float = 60.0, what: str = "") -> None:
    """
    ``wait_until`` outside an event loop: poll ``condition`` until it holds, and fail the test
    if ``bound`` seconds pass first (they only end a failing test, they order nothing).
    """
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {bound} s waiting for {what or condition}")
        time.sleep(0.02)


WRITE_RESULT = (
    "import json, os; json.dump([{'name': 'objective', 'type': 'objective', 'value': 1.5}], "
    "open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def python(code: str) -> list[str]:
    """A command that runs ``code`` with this interpreter."""
    return [sys.executable, "-c", textwrap.dedent(code)]


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


@pytest.fixture(autouse=True)
def _reset_library_logger() -> Iterator[None]:
    """Undo the logging set-up that the CLI's ``main`` does, so caplog sees every record."""
    yield
    logger = logging.getLogger("async_consumer")
    logger.handlers[:] = [logging.NullHandler()]  # as the package leaves it
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
