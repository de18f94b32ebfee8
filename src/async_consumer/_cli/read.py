"""The commands that read a store: ``status``, ``show``, ``logs``, ``report``."""

from __future__ import annotations

import argparse
import sys

import anyio

from .._models import TrialStatus
from .._report.build import write_report
from .._supervise.contain import describe_here
from ..stores import store_from_url
from .checks import UsageError, find_trial, read_store_url
from .sources import version_of
from .table import SORT_KEYS, render_trials, sort_trials
from .view import View

__all__ = ["logs", "report", "show", "status", "trials"]

EXIT_OK = 0


async def status(args: argparse.Namespace, view: View) -> int:
    """Counts by status, the best trial so far, the running trials, and the workers."""
    async with store_from_url(read_store_url(args)) as store:
        # counts and the best from the store, not from every trial: a large store is not read
        counts, best = await store.counts(), await store.best(maximize=args.maximize)
        running = await store.list(TrialStatus.RESERVED)
        view.status(counts, running, await store.workers(), best=best)
    view.note(f"on this host, {describe_here()}")
    return EXIT_OK


async def show(args: argparse.Namespace, view: View) -> int:
    """One trial (by id or unique prefix): its attempts and the end of its logs."""
    async with store_from_url(read_store_url(args)) as store:
        view.show(await find_trial(store, args.trial_id))
    return EXIT_OK


async def logs(args: argparse.Namespace, view: View) -> int:
    """A trial's stdout or stderr log, as it is."""
    async with store_from_url(read_store_url(args)) as store:
        stored = await find_trial(store, args.trial_id)
    outcomes = [a.outcome for a in stored.attempts if a.outcome is not None]
    if args.attempt is not None:
        outcomes = [o for o in outcomes if o.attempt == args.attempt]
    if not outcomes:
        msg = f"trial {stored.id!r} has no finished attempt" + (
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


async def report(args: argparse.Namespace, view: View) -> int:
    """The HTML report of a store."""
    async with store_from_url(read_store_url(args)) as store:
        count = await write_report(store, args.output, title=args.title, maximize=args.maximize)
    view.note(f"wrote {args.output} ({count} trials)")
    return EXIT_OK


async def trials(args: argparse.Namespace, view: View) -> int:
    """Every trial: id, status, objective, attempts, duration and parameters; sortable."""
    async with store_from_url(read_store_url(args)) as store:
        stored = await store.list()
        recorded = await store.experiment(args.experiment)
    if recorded is not None and not args.all_versions:  # the current version, as run shows
        latest = recorded.version
        shown = [
            t
            for t in stored
            if t.trial.experiment == args.experiment and version_of(t.trial, latest) == latest
        ]
        if len(shown) < len(stored):
            view.note(
                f"{len(stored) - len(shown)} trials of other versions or experiments "
                "not shown (--all-versions shows them)"
            )
        stored = shown
    names = {name for t in stored for name in t.trial.params}
    if args.sort not in SORT_KEYS and args.sort not in names:
        known = ", ".join([*SORT_KEYS, *sorted(names)])
        msg = f"--sort {args.sort!r}: expected one of {known}"
        raise UsageError(msg)
    ordered = sort_trials(stored, args.sort, maximize=args.maximize)
    if args.reverse:
        ordered.reverse()
    how = "json" if args.json else "csv" if args.csv else "text"
    sys.stdout.write(render_trials(ordered[: args.limit] if args.limit else ordered, how))
    sys.stdout.flush()
    return EXIT_OK
