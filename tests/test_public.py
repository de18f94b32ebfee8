"""The public API: one import, everything named in ``__all__``, and nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

import async_consumer
import async_consumer.stores
from async_consumer._errors import ConsumerError

PUBLIC_NAMES = [
    "Attempt",
    "Batch",
    "CodeChangePolicy",
    "CommandTemplate",
    "ConfigTemplate",
    "Consumer",
    "ConsumerError",
    "DuplicateTrial",
    "Experiment",
    "HeartbeatTarget",
    "InvalidResults",
    "LaunchError",
    "Lease",
    "LeaseLost",
    "Limits",
    "LimitsUnavailable",
    "Metric",
    "MissingResults",
    "Outcome",
    "Place",
    "Reason",
    "Result",
    "ResultsError",
    "ResumePolicy",
    "RetryPolicy",
    "Search",
    "SearchPlan",
    "SlotError",
    "Space",
    "SpaceError",
    "Status",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "StoredTrial",
    "TemplateError",
    "Trial",
    "TrialFilesError",
    "TrialNotFound",
    "TrialPaths",
    "TrialStatus",
    "Worker",
    "WorkerInfo",
    "WorkerState",
    "best_trial",
    "handle_signals",
    "install_child_watcher",
    "optimize",
    "parse_results",
    "pruning_callback",
    "read_results",
    "tune_gc",
]
"""Every public name, written out: a name missing from the package fails the test."""


def test_public_names_are_the_written_list() -> None:
    """``__all__`` is sorted and holds exactly the names written out here."""
    assert sorted(PUBLIC_NAMES) == PUBLIC_NAMES
    assert async_consumer.__all__ == PUBLIC_NAMES


def test_nothing_else_is_public() -> None:
    """Every public name of the package but its subpackage is in ``__all__``, and each is there."""
    # dir(), not vars(): the package imports its public names on first use (the command's start-up)
    public = {n for n in dir(async_consumer) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(async_consumer, n)).__name__ == "module"}
    assert sorted(public - modules) == PUBLIC_NAMES
    assert all(getattr(async_consumer, name) is not None for name in PUBLIC_NAMES)


def test_type_checkers_see_the_same_names() -> None:
    """The imports under ``TYPE_CHECKING`` name the same names and modules as ``_ORIGINS``."""
    tree = ast.parse(Path(async_consumer.__file__).read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If))
    imported = {
        alias.name: f"{'.' * node.level}{node.module}"
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name  # ``X as X``: an explicit re-export
    }
    assert imported == async_consumer._ORIGINS
    assert len(guarded.body) == len(PUBLIC_NAMES)


def test_every_error_a_user_can_meet_is_public() -> None:
    """Each class of the exception tree is exported."""
    tree, found = [ConsumerError], set()
    while tree:
        error = tree.pop()
        found.add(error.__name__)
        tree += error.__subclasses__()
    assert found <= set(PUBLIC_NAMES)


def test_public_classes_say_they_come_from_the_package() -> None:
    """Reprs and tracebacks name ``async_consumer.Outcome``, not a private module."""
    assert async_consumer.Outcome.__module__ == "async_consumer"
    assert async_consumer.Worker.__module__ == "async_consumer"
    assert repr(async_consumer.Batch) == "<class 'async_consumer.Batch'>"


def test_consumer_configuration_cannot_be_changed(tmp_path: Path) -> None:
    """A consumer's settings are fixed when it is made; its halted state is its own."""
    consumer = async_consumer.Consumer(["true"], base_dir=tmp_path, retry=2)
    with pytest.raises(AttributeError):
        consumer.retry = async_consumer.RetryPolicy(retries=5)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        consumer.is_halted = True  # type: ignore[misc]
    assert consumer.retry.retries == 2 and not consumer.is_halted
    worker = async_consumer.Worker(async_consumer.stores.MemoryStore(), consumer)
    with pytest.raises(AttributeError):
        worker.ran = 5  # type: ignore[misc]
    assert worker.ran == 0 and worker.consumer is consumer


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12+ asyncio waits on pidfds itself; nothing to install"
)
def test_the_child_watcher_is_installed_only_when_asked() -> None:
    """Running a consumer leaves asyncio's child watcher alone unless told otherwise."""
    code = """
import asyncio, sys, warnings
import anyio
from async_consumer import Consumer, Trial

async def main(**options):
    async with Consumer(["true"], base_dir=sys.argv[1], **options) as consumer:
        await consumer.run(Trial(id="t"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return type(asyncio.get_event_loop_policy().get_child_watcher()).__name__

print(anyio.run(main), anyio.run(lambda: main(child_watcher=True)))
"""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True
        )
    before, after = done.stdout.split()
    assert before != "_Watcher" and after == "_Watcher"


def test_installing_the_child_watcher_touches_nothing_deprecated() -> None:
    """On every Python, install_child_watcher() raises no DeprecationWarning (3.12+: a no-op)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async_consumer.install_child_watcher()
