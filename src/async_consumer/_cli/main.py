"""
The ``async-consumer`` command.

Exit status: 0 when every trial completed, 1 when some did not (or on a library error),
2 for bad usage or bad input, 130 when interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict

import anyio

from .._consumer import Consumer
from .._errors import ConsumerError
from .._gctune import tune_gc
from .._models import Trial, TrialStatus
from .._resume import ResumePolicy
from .._signals import handle_signals
from .._worker import Worker
from ..stores import TrialStore, open_store, store_from_url
from ..stores._retrying import Outage, RetryingStore
from .advice import advice, parse_rerun
from .args import build_parser, consumer_from, default_store_url, slot_demand
from .checks import UsageError, writable_dir
from .console import configure_logging
from .experiment import experiment_version
from .in_job import Placement, placement_of
from .launch import launch
from .leave import early_signals, handle_worker_signals
from .read import logs, report, show, status, trials
from .sources import SourceError, grid_params, load_params, trials_from
from .view import View

__all__ = ["console", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _load_trials(args: argparse.Namespace, version: int = 1) -> list[Trial]:
    params = []
    if args.params:
        params.extend(load_params(args.params))
    if args.grid:
        params.extend(grid_params(args.grid))
    if not params:
        msg = "no trials: give --params FILE (.jsonl or .csv) or --grid NAME=V1,V2"
        raise UsageError(msg)
    demand = slot_demand(args.slots_per_trial, getattr(args, "slots", []))
    return trials_from(params, experiment=args.experiment, slots=demand, version=version)


def _make_worker(
    args: argparse.Namespace,
    store: TrialStore,
    consumer: Consumer,
    view: View,
    place: Placement | None,
) -> Worker:
    """The worker the options describe, placed in its batch job when it runs in one."""
    resume = ResumePolicy(getattr(args, "resume_backoff", 5.0), getattr(args, "resume_max", 300.0))
    return Worker(
        store,
        consumer,
        follow=getattr(args, "follow", False),
        max_broken=args.max_broken,
        on_outcome=view.outcome,
        resume=resume,
        **asdict(place or Placement()),  # name, job_id, task_id, reserve_until
    )


@asynccontextmanager
async def _linked_store(args: argparse.Namespace, url: str) -> AsyncIterator[RetryingStore]:
    """The store a worker uses: opened, and every call retried while it is unreachable."""
    outage = Outage(args.store_outage_limit)
    store = await outage.call(lambda: open_store(url))
    async with RetryingStore(store, outage=outage) as linked:
        yield linked


async def _work(
    args: argparse.Namespace,
    store: TrialStore,
    view: View,
    ids: list[str] | None = None,
    place: Placement | None = None,
    early: list[signal.Signals] | None = None,
) -> int:
    """
    Run a worker on the store until it is drained (or interrupted); ``ids``: run's trials,
    already checked against the command.

    With a ``place`` (the ``worker`` command), signals make the worker leave, its trials left
    for other workers to resume (``early``: those that came while it started).
    """
    consumer = consumer_from(args, store)
    writable_dir(consumer.base_dir)  # before anything is reserved
    checked = frozenset(ids or ())
    for state in (TrialStatus.NEW, TrialStatus.INTERRUPTED):  # not every finished trial
        for waiting in await store.list(state):
            if waiting.id not in checked:  # another parameter set's, or added by ``add``
                consumer.check(waiting.trial)
            view.params[waiting.id] = waiting.trial.params
    follow = getattr(args, "follow", False)
    worker = _make_worker(args, store, consumer, view, place)
    watch = handle_signals(consumer) if place is None else handle_worker_signals(worker, early)
    async with consumer, watch as signals:
        progress = view.progress(await store.counts(ids), lambda: len(consumer.running))
        # the worker's error is raised below, outside the signal handler's task group
        with progress, contextlib.suppress(ConsumerError):
            await view.redraw_while(worker.run)
    if worker.error is not None:
        raise worker.error
    return await _conclude(store, view, worker, ids, follow=follow, interrupted=bool(signals))


async def _conclude(
    store: TrialStore,
    view: View,
    worker: Worker,
    ids: list[str] | None,
    *,
    follow: bool,
    interrupted: bool,
) -> int:
    """The end of a run or a worker: the summary, a line of advice per kind, the exit status."""
    final = await store.list()
    if ids is not None:  # run: what this parameter set is, not everything in the store
        wanted = set(ids)
        final = [t for t in final if t.id in wanted]
    view.summary(final, worker)
    if interrupted:
        return EXIT_INTERRUPTED
    counts = await store.counts(ids if ids is not None else worker.trial_ids)
    for line in advice(counts, follow=follow):
        view.note(line)
    # every trial of the parameter set counts, not only those run now
    failed = sum(counts.values()) != counts[TrialStatus.COMPLETED]
    return EXIT_FAILED if failed or worker.is_halted else EXIT_OK


async def _run(args: argparse.Namespace, view: View) -> int:
    consumer = consumer_from(args)  # a missing or bad command: nothing is recorded
    trials = _load_trials(args)
    for trial in trials:  # nor for bad parameters or unknown placeholders
        consumer.check(trial)
    rerun = parse_rerun(args.rerun) if args.rerun else frozenset()
    async with _linked_store(args, args.store or default_store_url(args.experiment)) as store:
        args.experiment_version, note = await experiment_version(args, store)
        if note:
            view.note(note)
        if args.experiment_version != 1:  # the same parameters, with ids of that version's
            trials = _load_trials(args, args.experiment_version)
        ids = [t.id for t in trials]
        added = await store.add(trials, exist_ok=True)
        if added < len(trials):
            view.note(
                f"resuming: {len(trials) - added} of {len(trials)} trials were already in the store"
            )
        if rerun:
            again = await store.rerun(ids, rerun)
            view.note(f"running again: {again} trials (their earlier attempts are kept)")
        return await _work(args, store, view, ids)


async def _add(args: argparse.Namespace, view: View) -> int:
    _load_trials(args)  # bad parameters: refused before the store is opened
    async with store_from_url(args.store) as store:
        recorded = await store.experiment(args.experiment)  # trials of its latest version
        trials = _load_trials(args, recorded.version if recorded else 1)
        added = await store.add(trials, exist_ok=True)
        view.note(f"added {added} trials ({len(trials) - added} already there)")
    return EXIT_OK


async def _worker(args: argparse.Namespace, view: View) -> int:
    with early_signals() as early:
        place = await placement_of(args, os.environ)
        async with _linked_store(args, args.store) as store:
            return await _work(args, store, view, place=place, early=early)


COMMANDS = {
    "run": _run,
    "add": _add,
    "worker": _worker,
    "status": status,
    "show": show,
    "logs": logs,
    "report": report,
    "trials": trials,
    "launch": launch,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    view = View(
        json_output=getattr(args, "json", False),
        quiet=args.quiet > 0,
        maximize=getattr(args, "maximize", False),
    )
    configure_logging(args.verbose - args.quiet, view)
    try:
        return anyio.run(COMMANDS[args.command], args, view)
    except (UsageError, SourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConsumerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BaseExceptionGroup as group:  # from a worker's lanes: the first error, on one line
        first = _first_error(group)
        if not isinstance(first, ConsumerError | OSError):
            raise
        print(f"error: {first}", file=sys.stderr)
        return EXIT_FAILED


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in a (nested) exception group."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def console() -> int:
    """The ``async-consumer`` command: :func:`main`, in a process set up for many trials."""
    tune_gc()
    return main()
