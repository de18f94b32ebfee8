"""
What fault tests and the fault benchmarks do from synchronous code: fill and read a store, and
find the processes a run's trials left alive. A plain module (no pytest), so that the scripts in
``benchmarks/`` import it as they import ``tests/bouncer.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import anyio

from async_consumer import StoredTrial, Trial
from async_consumer.stores import store_from_url

__all__ = ["add_trials", "left_behind", "stored_trials"]


def add_trials(url: str, trials: Iterable[Trial]) -> None:
    """Add ``trials`` to the store at ``url``, from synchronous code."""

    async def add() -> None:
        async with store_from_url(url) as store:
            await store.add(trials)

    anyio.run(add)


def stored_trials(url: str) -> list[StoredTrial]:
    """Every trial of the store at ``url``, with its attempts, from synchronous code."""

    async def read() -> list[StoredTrial]:
        async with store_from_url(url) as store:
            return await store.list()

    return anyio.run(read)


def left_behind(base_dir: Path) -> list[int]:
    """Live processes started for trials under ``base_dir`` (their environment names it)."""
    marker = f"ASYNC_CONSUMER_WORKING_DIR={base_dir}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if marker not in environ.read():
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z":
            found.append(int(entry.name))
    return found
