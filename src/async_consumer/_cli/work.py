"""The commands that run trials: ``run``, ``add`` and ``worker``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import anyio

from .._consumer import Consumer
from .._errors import ConsumerError, StoreBusy, StoreUnavailable
from .._models import TrialStatus
from .._resume import ResumePolicy
from .._search.search import Search, SearchPlan
from .._search.store import SearchingStore
from .._signals import handle_signals
from .._worker.worker import Worker
from ..stores import TrialStore, open_store, store_from_url
from ..stores._retrying import Outage
from . import searching
from .adding import Added, add_in_chunks
from .advice import advice, parse_rerun, plural
from .args import run_options
from .batch_job import Placement, placement_of
from .consumer_setup import consumer_from, containment_line, default_store_url
from .experiment import command_of, experiment_version
from .leave import early_signals, handle_worker_signals
from .store_pages import tally
from .trialsource import TrialSource
from .usage_checks import check_program, writable_dir
from .view import View

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "add", "run", "worker"]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


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


FIRST_CONTACT = 5.0
"""Seconds a store never reached yet is tried (a blip as it starts) before the command gives
up: the outage limit's patience is for a store that was reached, and went away."""


async def _reach(url: str, outage: Outage, limit: float) -> TrialStore:
    """
    The store opened, tried for up to ``limit`` seconds (quietly: a wrong URL is one line); a
    store that answers but is busy (too many clients) was reached: waited out as an outage.

    Raises:
        StoreUnavailable: it could not be reached in that time, or was busy past the outage.
    """
    deadline, delay = anyio.current_time() + limit, 0.05
    while True:
        try:
            return await open_store(url)
        except StoreBusy:
            return await outage.call(lambda: open_store(url))
        except StoreUnavailable as exc:
            if anyio.current_time() + delay > deadline:
                msg = f"the store was never reached (tried for {limit:g} s): {exc}"
                raise StoreUnavailable(msg) from None
        await anyio.sleep(delay)  # a backoff between tries, nothing to order
        delay = min(delay * 2, 1.0)


@asynccontextmanager
async def _linked_store(args: argparse.Namespace, url: str) -> AsyncIterator[SearchingStore]:
    """
    The store a worker uses: opened (a store never reached fails fast), and every call retried
    while it is unreachable; a search (once given to it) adds its next trial where none waits.
    """
    outage = Outage(args.store_outage_limit)
    store = await _reach(url, outage, min(FIRST_CONTACT, args.store_outage_limit))
    async with SearchingStore(store, outage=outage) as linked:
        yield linked


async def _work(
    args: argparse.Namespace,
    store: TrialStore,
    view: View,
    run: Added | None = None,
    place: Placement | None = None,
    early: list[signal.Signals] | None = None,
    search: Search | None = None,
) -> int:
    """
    Run a worker on the store until it is drained (or interrupted); ``run``: run's trials.

    With a ``place`` (the ``worker`` command), signals make the worker leave, its trials left
    for other workers to resume (``early``: those that came while it started).
    """
    if search is not None and isinstance(store, SearchingStore):
        store.search = search
    on_metric = search.report if search is not None and search.plan.pruner != "none" else None
    consumer = consumer_from(args, store, on_metric=on_metric)
    writable_dir(consumer.base_dir)  # before anything is reserved
    view.note(containment_line(args))
    follow = getattr(args, "follow", False)
    worker = _make_worker(args, store, consumer, view, place)
    view.trial_of = worker.running_trial  # an outcome is shown while its lease is held
    watch = handle_signals(consumer) if place is None else handle_worker_signals(worker, early)
    async with consumer, watch as signals:
        counts = run.counts if run is not None else await store.counts()
        total = await _left_to_run(store, search) if search is not None else None
        progress = view.progress(counts, lambda: len(consumer.running), total=total)
        # the worker's error is raised below, outside the signal handler's task group
        with progress, contextlib.suppress(ConsumerError):
            await view.redraw_while(worker.run)
    if worker.error is not None:
        raise worker.error
    stopped = bool(signals)
    shown = run if run is not None else await _searched(store, search)
    return await _conclude(
        store, view, worker, shown, follow=follow, interrupted=stopped, max_broken=args.max_broken
    )


@dataclass(frozen=True, slots=True)
class _Searched:
    """A search's trial ids, and how many of them the store holds."""

    ids: frozenset[str]
    total: int


async def _searched(store: TrialStore, search: Search | None) -> _Searched | None:
    """A search's trials in the store (``None``: not a search)."""
    if search is None:
        return None
    ids = frozenset(search.id_of(k) for k in range(1, search.plan.n + 1))
    return _Searched(ids, sum((await store.counts(list(ids))).values()))


async def _left_to_run(store: TrialStore, search: Search) -> int:
    """The search's trials still to run: its total, less those that ended for good."""
    ids = [search.id_of(k) for k in range(1, search.plan.n + 1)]
    counts = await store.counts(ids)
    ended = (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.BROKEN)
    return search.plan.n - sum(counts[status] for status in ended)


async def _conclude(
    store: TrialStore,
    view: View,
    worker: Worker,
    shown: Added | _Searched | None,
    *,
    follow: bool,
    interrupted: bool,
    max_broken: int | None = None,
) -> int:
    """
    The end of a run or a worker: the summary, a line of advice per kind, the exit status.
    The summary counts the trials ``shown`` (a parameter set's, a search's), else the store's;
    the exit status a parameter set's trials, else those run now.
    """
    # what this parameter set (or search) is, not everything in the store
    ids, total = (shown.ids, shown.total) if shown is not None else (None, None)
    counts, best = await tally(store, ids, maximize=view.maximize, total=total)
    view.summary(counts, best, worker)
    if interrupted:
        return EXIT_INTERRUPTED
    if not isinstance(shown, Added):
        counts = await store.counts(worker.trial_ids)
    # halted, not interrupted, no error raised: the limit stopped it
    limit = max_broken if worker.is_halted and max_broken is not None else None
    for line in advice(counts, follow=follow, max_broken=limit):
        view.note(line)
    # every trial of the parameter set counts, not only those run now; a pruned one is a
    # search's decision, not a failure
    done = counts[TrialStatus.COMPLETED] + counts.get(TrialStatus.PRUNED, 0)
    failed = sum(counts.values()) != done
    return EXIT_FAILED if failed or worker.is_halted else EXIT_OK


@asynccontextmanager
async def _versioned_store(
    args: argparse.Namespace, view: View
) -> AsyncIterator[tuple[SearchingStore, bool]]:
    """
    ``run``'s store, linked, once the experiment's version is chosen (recorded now if new) and
    its direction and note are given to ``view``; with whether it replaced the recorded command.
    """
    store_url = args.store or default_store_url(args.experiment)
    async with _linked_store(args, store_url) as store:
        chosen = await experiment_version(args, store, run_options)
        args.experiment_version, view.maximize = chosen.version, chosen.maximize
        if chosen.note:
            view.note(chosen.note)
        yield store, chosen.replaced


async def run(args: argparse.Namespace, view: View) -> int:
    """``run``: add the parameter set's trials to the store, and run them (or search)."""
    plan = searching.plan_of(args)  # a bad prior: nothing is recorded
    if plan is not None:
        return await _search(args, view, plan)
    consumer = consumer_from(args)  # a missing or bad command: nothing is recorded
    source = TrialSource.of(args)
    checked = source.check(consumer.check)  # nor for bad parameters or unknown placeholders
    with checked:
        check_program(command_of(args), in_trial_dir=args.cd_trial_dir)  # nor a typo in it
        rerun = parse_rerun(args.rerun) if args.rerun else frozenset()
        async with _versioned_store(args, view) as (store, replaced):
            if replaced:  # trials that broke without starting run with the new command
                rerun = rerun | {TrialStatus.BROKEN}
            run = await add_in_chunks(store, checked, version=args.experiment_version, rerun=rerun)
            checked.close()  # in the store now: the disk they took is not held for the run
            _note_added(view, run, rerun=bool(rerun))
            return await _work(args, store, view, run)


async def _search(args: argparse.Namespace, view: View, plan: SearchPlan) -> int:
    """``run`` with priors: record the search in the store, then suggest and run its trials."""
    consumer_from(args)  # a missing or bad command: nothing is recorded
    check_program(command_of(args), in_trial_dir=args.cd_trial_dir)  # nor a typo in it
    args.search_plan = plan.to_json()
    async with _versioned_store(args, view) as (store, _):
        plan = SearchPlan.from_json(args.search_plan)  # with what the experiment keeps
        view.note(
            f"searching: {plan.n} trials, sampler {plan.sampler}, pruner {plan.pruner}, "
            f"over {', '.join(plan.space.names)}"
        )
        search = searching.search_of(args, store, plan, maximize=view.maximize)
        return await _work(args, store, view, search=search)


def _note_added(view: View, run: Added, *, rerun: bool) -> None:
    if run.added < run.total:
        counts = run.counts
        to_run = counts[TrialStatus.NEW] + counts[TrialStatus.INTERRUPTED] - run.added
        done = counts[TrialStatus.COMPLETED]
        view.note(
            f"resuming: {run.total - run.added} of {plural(run.total, 'trial')} were already in "
            f"the store ({done} completed, {to_run} to run"
            + (f", {counts[TrialStatus.BROKEN]} broken)" if counts[TrialStatus.BROKEN] else ")")
        )
    if rerun:
        view.note(f"running again: {plural(run.again, 'trial')} (their earlier attempts are kept)")


async def add(args: argparse.Namespace, view: View) -> int:
    """``add``: add trials to a store, for workers to run."""
    source = TrialSource.of(args)
    # bad parameters: refused before the store is opened
    with source.check() as checked:
        async with store_from_url(args.store) as store:
            recorded = await store.experiment(args.experiment)  # trials of its latest version
            version = recorded.version if recorded else 1
            # 5,000 trials a transaction: a fifth of the commits (each writes the id index's
            # pages again), for a few MB that only ``add`` holds (a run's memory stays flat)
            added = await add_in_chunks(store, checked, version=version, count=False, together=5)
            view.note(
                f"added {plural(added.added, 'trial')} ({added.total - added.added} already there)"
            )
    return EXIT_OK


async def worker(args: argparse.Namespace, view: View) -> int:
    """``worker``: run a store's trials until it is drained, leaving when told to."""
    check_program(command_of(args), in_trial_dir=args.cd_trial_dir)
    consumer_from(args)  # a bad command, or limits not enforceable here: no store opened
    with early_signals() as early:
        place = await placement_of(args, os.environ)
        async with _linked_store(args, args.store) as store:
            search = await searching.search_for_worker(args, store)
            return await _work(args, store, view, place=place, early=early, search=search)
