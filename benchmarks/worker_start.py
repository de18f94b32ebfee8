"""
What a ``worker``'s start-up reads: store calls and rows read before its first reservation.

Fills a fresh store (PostgreSQL when ``ASYNC_CONSUMER_TEST_POSTGRES_URL`` is set, else SQLite)
with ``--trials`` waiting trials, then starts ``--workers`` ``async-consumer worker`` commands
together in this process, each with its own store connection wrapped to count its calls. Each
is stopped at its first reservation; the figures are per worker start (medians, and the
slowest start).

    python benchmarks/worker_start.py [--workers 20] [--trials 2000] [--json]
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import anyio
import anyio.lowlevel

from async_consumer import Trial
from async_consumer._cli import work
from async_consumer._cli.args import build_parser
from async_consumer._cli.parser import parse_command_line
from async_consumer._cli.view import View
from async_consumer.stores import TrialStore, open_store, store_from_url


@dataclass
class Start:
    """One worker's start: its store calls, rows read, and seconds until its first reservation."""

    began: float
    calls: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    seconds: float | None = None
    scope: anyio.CancelScope | None = None


class Counting:
    """A store whose calls are counted, and whose first reservation ends the worker's start."""

    def __init__(self, store: TrialStore, start: Start) -> None:
        self._store = store
        self._start = start

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value) or name.startswith("__"):
            return value
        start = self._start

        async def counted(*args: Any, **kwargs: Any) -> Any:
            if name in ("reserve", "reserve_many") and start.seconds is None:
                start.seconds = time.monotonic() - start.began
                assert start.scope is not None
                start.scope.cancel()
                await anyio.lowlevel.checkpoint()  # cancelled here: nothing is reserved
            start.calls[name] += 1
            result = await value(*args, **kwargs)
            if name == "list":
                start.rows += len(result)
            return result

        return counted

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._store.aclose()


_START: contextvars.ContextVar[Start] = contextvars.ContextVar("start")


async def _add(url: str, count: int) -> None:
    async with store_from_url(url) as store:
        await store.add(Trial(id=f"t{i:05d}", params={"x": i}) for i in range(count))


async def _starts(url: str, workers: int, base_dir: str) -> list[Start]:
    real_open = open_store

    async def open_counted(store_url: str) -> Any:
        return Counting(await real_open(store_url), _START.get())

    async def one(start: Start) -> None:
        argv = ["worker", "--store", url, "-j", "4", "--base-dir", base_dir, "-q",
                "--", "true", "{x}"]  # fmt: skip
        args = parse_command_line(build_parser(), argv)
        _START.set(start)  # the worker's task (and the store it opens) knows its start
        with anyio.CancelScope() as scope:
            start.scope = scope
            await work.worker(args, View(json_output=False, quiet=True))

    starts = [Start(time.monotonic()) for _ in range(workers)]
    work.open_store = open_counted  # type: ignore[attr-defined,assignment]
    try:
        async with anyio.create_task_group() as tg:
            for start in starts:
                tg.start_soon(one, start)
    finally:
        work.open_store = real_open  # type: ignore[attr-defined]
    return starts


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL")
    schema = f"start_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"{base}?schema={schema}" if base else f"sqlite:///{Path(tmp).resolve()}/store.db"
        anyio.run(_add, url, args.trials)
        began = time.monotonic()
        starts = anyio.run(_starts, url, args.workers, f"{tmp}/trials")
        seconds = time.monotonic() - began
        if base:
            anyio.run(_drop, base, schema)
    calls = [sum(n for name, n in s.calls.items() if name != "aclose") for s in starts]
    figures = {
        "store": "postgresql" if base else "sqlite",
        "workers": args.workers,
        "trials": args.trials,
        "calls_per_start": statistics.median(calls),
        "calls_by_name": {k: n for k, n in starts[0].calls.items() if k != "aclose"},
        "rows_read_per_start": statistics.median(s.rows for s in starts),
        "start_p50_s": round(statistics.median(s.seconds or 0 for s in starts), 3),
        "start_max_s": round(max(s.seconds or 0 for s in starts), 3),
        "all_started_s": round(seconds, 3),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
