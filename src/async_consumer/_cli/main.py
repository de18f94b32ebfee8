"""
The ``async-consumer`` command.

Exit status: 0 when every trial completed, 1 when some did not (or on a library error),
2 for bad usage or bad input, 130 when interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from .._errors import ConsumerError
from .._gctune import tune_gc
from .._models import Trial, TrialStatus
from .._report.build import write_report
from .._signals import handle_signals
from .._worker import Worker
from ..stores import TrialStore, open_store, store_from_url
from ..stores._retrying import Outage, RetryingStore
from .args import build_parser, consumer_from, default_store_url, slot_demand
from .sources import SourceError, grid_params, load_params, trials_from
from .view import View

__all__ = ["console", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the command line: one line to stderr, exit status 2."""


def _load_trials(args: argparse.Namespace) -> list[Trial]:
    params = []
    if args.params:
        params.extend(load_params(args.params))
    if args.grid:
        params.extend(grid_params(args.grid))
    if not params:
        msg = "no trials: give --params FILE (.jsonl or .csv) or --grid NAME=V1,V2"
        raise UsageError(msg)
    demand = slot_demand(args.slots_per_trial, getattr(args, "slots", []))
    return trials_from(params, experiment=args.experiment, slots=demand)


@asynccontextmanager
async def _linked_store(args: argparse.Namespace, url: str) -> AsyncIterator[RetryingStore]:
    """The store a worker uses: opened, and every call retried while it is unreachable."""
    outage = Outage(args.store_outage_limit)
    store = await outage.call(lambda: open_store(url))
    async with RetryingStore(store, outage=outage) as linked:
        yield linked


async def _work(args: argparse.Namespace, store: TrialStore, view: View) -> int:
    """Run a worker on the store until it is drained (or interrupted)."""
    consumer = consumer_from(args, store)
    for waiting in await store.list():
        if waiting.status in (TrialStatus.NEW, TrialStatus.INTERRUPTED):
            consumer.check(waiting.trial)
    worker = Worker(
        store,
        consumer,
        follow=getattr(args, "follow", False),
        max_broken=args.max_broken,
        on_outcome=view.outcome,
    )
    async with consumer, handle_signals(consumer) as signals:
        with view.progress(await store.counts(), lambda: len(consumer.running)):
            try:
                await worker.run()
            except ConsumerError:
                pass  # raised below, outside the signal handler's task group
    if worker.error is not None:
        raise worker.error
    final = await store.list()
    view.summary(final, worker)
    if signals:
        return EXIT_INTERRUPTED
    # trials count by their final status (a retried one by its last attempt)
    failed = any(t.status is not TrialStatus.COMPLETED for t in final if t.id in worker.trial_ids)
    return EXIT_FAILED if failed or worker.is_halted else EXIT_OK


async def _run(args: argparse.Namespace, view: View) -> int:
    trials = _load_trials(args)
    async with _linked_store(args, args.store or default_store_url(args.experiment)) as store:
        added = await store.add(trials, exist_ok=True)
        if added < len(trials):
            view.note(
                f"resuming: {len(trials) - added} of {len(trials)} trials were already in the store"
            )
        return await _work(args, store, view)


async def _add(args: argparse.Namespace, view: View) -> int:
    trials = _load_trials(args)
    async with store_from_url(args.store) as store:
        added = await store.add(trials, exist_ok=True)
        view.note(f"added {added} trials ({len(trials) - added} already there)")
    return EXIT_OK


async def _worker(args: argparse.Namespace, view: View) -> int:
    async with _linked_store(args, args.store) as store:
        return await _work(args, store, view)


async def _status(args: argparse.Namespace, view: View) -> int:
    async with store_from_url(args.store) as store:
        view.status(await store.list())
    return EXIT_OK


async def _show(args: argparse.Namespace, view: View) -> int:
    async with store_from_url(args.store) as store:
        view.show(await store.get(args.trial_id))
    return EXIT_OK


async def _logs(args: argparse.Namespace, view: View) -> int:
    async with store_from_url(args.store) as store:
        stored = await store.get(args.trial_id)
    outcomes = [a.outcome for a in stored.attempts if a.outcome is not None]
    if args.attempt is not None:
        outcomes = [o for o in outcomes if o.attempt == args.attempt]
    if not outcomes:
        msg = f"trial {args.trial_id!r} has no finished attempt" + (
            f" number {args.attempt}" if args.attempt else ""
        )
        raise UsageError(msg)
    last = outcomes[-1]
    path = last.stderr_path if args.stderr else last.stdout_path
    if not path:
        msg = f"attempt {last.attempt} never started: {last.message}"
        raise UsageError(msg)
    sys.stdout.buffer.write(await anyio.Path(path).read_bytes())
    sys.stdout.flush()
    return EXIT_OK


async def _report(args: argparse.Namespace, view: View) -> int:
    async with store_from_url(args.store) as store:
        count = await write_report(store, args.output, title=args.title)
    view.note(f"wrote {args.output} ({count} trials)")
    return EXIT_OK


COMMANDS = {
    "run": _run,
    "add": _add,
    "worker": _worker,
    "status": _status,
    "show": _show,
    "logs": _logs,
    "report": _report,
}


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < -1:
        level = logging.CRITICAL
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TrialFormatter())
    root = logging.getLogger("async_consumer")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _TrialFormatter(logging.Formatter):
    """``level trial-id: message``; records without a trial id leave it out."""

    def format(self, record: logging.LogRecord) -> str:
        trial = getattr(record, "trial_id", None)
        prefix = (
            f"{record.levelname.lower()} {trial}: " if trial else f"{record.levelname.lower()}: "
        )
        return prefix + record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose - args.quiet)
    view = View(json_output=getattr(args, "json", False), quiet=args.quiet > 0)
    try:
        return anyio.run(COMMANDS[args.command], args, view)
    except (UsageError, SourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConsumerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def console() -> int:
    """The ``async-consumer`` command: :func:`main`, in a process set up for many trials."""
    tune_gc()
    return main()
