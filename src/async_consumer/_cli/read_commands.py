"""The commands that read a store: ``status``, ``show``, ``logs``, ``report``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio

from .._experiment import Experiment
from .._models import StoredTrial, TrialStatus
from .._ranking import best_trial
from .._report.build import write_report
from .._supervise.contain import describe_here
from .._trial.paths import trial_paths
from ..stores import TrialStore, store_from_url
from .advice import plural
from .experiment import direction_of
from .logfile import FOLLOW_POLL, copy_from, tail_offset
from .store_pages import pages
from .table import SORT_KEYS, render_trials, sort_trials
from .trial_params import version_of
from .usage_checks import UsageError, find_trial, read_store_url
from .view import SearchShown, View

__all__ = ["logs", "report", "show", "status", "trials"]

EXIT_OK = 0


@dataclass(frozen=True, slots=True)
class _Scope:
    """
    Which trials a read command shows: the experiment's current version (the one ``run``
    runs), or with ``--all-versions`` (or no recorded experiment) every trial in the store.
    """

    name: str
    recorded: Experiment | None
    all_versions: bool

    @property
    def is_everything(self) -> bool:
        return self.recorded is None or self.all_versions

    def keeps(self, stored: StoredTrial) -> bool:
        """Whether ``stored`` is one of the trials shown."""
        if self.recorded is None or self.all_versions:
            return True
        latest = self.recorded.version
        trial = stored.trial
        return trial.experiment == self.name and version_of(trial, latest) == latest

    def note(self, left_out: int, verb: str) -> str:
        """The line that says how many trials were left out ("" if none); ``verb``: "show"."""
        if not left_out:
            return ""
        done = "shown" if verb == "show" else f"{verb}ed"
        return (
            f"{plural(left_out, 'trial')} of other versions or experiments not {done} "
            f"(--all-versions {verb}s them)"
        )


async def _scope(args: argparse.Namespace, store: TrialStore) -> _Scope:
    recorded = await store.experiment(args.experiment)
    return _Scope(args.experiment, recorded, getattr(args, "all_versions", False))


async def _tally_kept(
    store: TrialStore, scope: _Scope, *, maximize: bool
) -> tuple[dict[TrialStatus, int], StoredTrial | None, int]:
    """Counts and the best of the trials ``scope`` keeps, and how many it left out."""
    counts = dict.fromkeys(TrialStatus, 0)
    best: StoredTrial | None = None
    left_out = 0
    async for page in pages(store):
        kept = [t for t in page if scope.keeps(t)]
        left_out += len(page) - len(kept)
        for trial in kept:
            counts[trial.status] += 1
        done = [t for t in kept if t.status is TrialStatus.COMPLETED]
        best = best_trial([*([best] if best else []), *done], maximize=maximize)
    return counts, best, left_out


async def _is_whole_store(store: TrialStore, scope: _Scope) -> bool:
    """
    Whether the trials ``scope`` shows are the whole store: every version, or the first of an
    experiment that is alone in it (a search's trials counted by their ids against the store's).
    """
    if scope.is_everything:
        return True
    recorded = scope.recorded
    if recorded is None or recorded.version != 1:
        return False
    if recorded.search is None:
        return True  # a list of trials: told apart only by reading them (as before)
    n = int(json.loads(recorded.search)["n"])
    ids = [f"{scope.name}-{k}" for k in range(1, n + 1)]
    return sum((await store.counts(ids)).values()) == sum((await store.counts()).values())


def _search_of(scope: _Scope) -> SearchShown | None:
    """
    The search of the experiment version shown (``None``: not a search, or every version),
    read from its record as it is (its sampler need not be installed here).
    """
    recorded = scope.recorded
    if scope.is_everything or recorded is None or recorded.search is None:
        return None
    plan = json.loads(recorded.search)
    return SearchShown(plan["n"], plan["sampler"], plan["pruner"])


async def status(args: argparse.Namespace, view: View) -> int:
    """Counts by status, the best trial so far, the running trials, and the workers."""
    async with store_from_url(read_store_url(args)) as store:
        view.maximize = await direction_of(args, store)
        scope = await _scope(args, store)
        if await _is_whole_store(store, scope):
            # counts and the best from the store, not from every trial: a large store is not read
            counts, best = await store.counts(), await store.best(maximize=view.maximize)
        else:  # a later version, or other experiments beside: its trials are read
            counts, best, left_out = await _tally_kept(store, scope, maximize=view.maximize)
            view.note(scope.note(left_out, "count"))
        running = [t for t in await store.list(TrialStatus.RESERVED) if scope.keeps(t)]
        search = _search_of(scope)
        view.status(counts, running, await store.workers(), best=best, search=search)
    view.note(f"on this host, {describe_here()}")
    return EXIT_OK


async def show(args: argparse.Namespace, view: View) -> int:
    """One trial (by id or unique prefix): its attempts and the end of its logs."""
    async with store_from_url(read_store_url(args)) as store:
        view.show(await find_trial(store, args.trial_id))
    return EXIT_OK


def _running_log(args: argparse.Namespace, stored: StoredTrial) -> tuple[int, str] | None:
    """The running attempt's number and log path (under ``--base-dir``), if one runs."""
    last = stored.attempts[-1] if stored.attempts else None
    if last is None or last.outcome is not None or stored.status is not TrialStatus.RESERVED:
        return None
    if args.attempt is not None and args.attempt != last.number:
        return None
    trial = stored.trial.model_copy(update={"attempt": last.number})
    paths = trial_paths(Path(args.base_dir), trial, None)
    return last.number, str(paths.stderr if args.stderr else paths.stdout)


def _finished_log(args: argparse.Namespace, stored: StoredTrial) -> str:
    """
    The log path of the chosen (or last) finished attempt.

    Raises:
        UsageError: there is none, or that attempt never started.
    """
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
    return path


async def logs(args: argparse.Namespace, view: View) -> int:
    """
    A trial's stdout or stderr log, as it is: streamed, never read whole; ``--tail N`` its last
    lines; ``--follow`` what a running attempt appends, until it ends.
    """
    async with store_from_url(read_store_url(args)) as store:
        stored = await find_trial(store, args.trial_id)
        running = _running_log(args, stored) if args.follow else None
        path = running[1] if running is not None else _finished_log(args, stored)
        offset = tail_offset(path, args.tail) if args.tail is not None else 0
        offset = copy_from(path, offset)
        while running is not None:
            await anyio.sleep(FOLLOW_POLL)  # a log has no event to wait for: polled
            now = await store.get(stored.id)
            ended = now.status is not TrialStatus.RESERVED or len(now.attempts) > running[0]
            offset = copy_from(path, offset)
            if ended:
                break
    return EXIT_OK


async def report(args: argparse.Namespace, view: View) -> int:
    """The HTML report of a store (the experiment's current version, or every trial)."""
    async with store_from_url(read_store_url(args)) as store:
        maximize = await direction_of(args, store)
        scope = await _scope(args, store)
        count = await write_report(
            store, args.output, title=args.title, maximize=maximize, keep=scope.keeps
        )
        left_out = sum((await store.counts()).values()) - count
    view.note(f"wrote {args.output} ({plural(count, 'trial')})")
    view.note(scope.note(left_out, "show"))
    return EXIT_OK


async def _versions(store: TrialStore, stored: list[StoredTrial]) -> dict[str, int]:
    """Each trial's experiment version, by its id."""
    latest: dict[str, int] = {}
    for name in {t.trial.experiment for t in stored}:
        recorded = await store.experiment(name)
        latest[name] = recorded.version if recorded is not None else 1
    return {t.id: version_of(t.trial, latest[t.trial.experiment]) for t in stored}


async def trials(args: argparse.Namespace, view: View) -> int:
    """Every trial: id, status, objective, attempts, duration and parameters; sortable."""
    async with store_from_url(read_store_url(args)) as store:
        stored = await store.list()
        maximize = await direction_of(args, store)
        scope = await _scope(args, store)
        versions = await _versions(store, stored) if args.all_versions else None
    shown = [t for t in stored if scope.keeps(t)]
    view.note(scope.note(len(stored) - len(shown), "show"))
    names = {name for t in shown for name in t.trial.params}
    if args.sort not in SORT_KEYS and args.sort not in names:
        known = ", ".join([*SORT_KEYS, *sorted(names)])
        msg = f"--sort {args.sort!r}: expected one of {known}"
        raise UsageError(msg)
    ordered = sort_trials(shown, args.sort, maximize=maximize)
    if args.reverse:
        ordered.reverse()
    how = "json" if args.json else "csv" if args.csv else "text"
    chosen = ordered[: args.limit] if args.limit else ordered
    sys.stdout.write(render_trials(chosen, how, versions=versions))
    sys.stdout.flush()
    return EXIT_OK
