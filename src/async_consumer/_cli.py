"""
The ``async-consumer`` command.

Exit status: 0 when every trial completed, 1 when some did not (or on a library error),
2 for bad usage or bad input, 130 when interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from ._cliargs import build_parser, consumer_from, slot_demand
from ._errors import ConsumerError
from ._models import Outcome, Status, Trial
from ._signals import handle_signals
from ._sources import SourceError, grid_params, load_params, trials_from

__all__ = ["main"]

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
    return trials_from(
        params, experiment=args.experiment, slots=slot_demand(args.slots_per_trial, args.slots)
    )


def _line(outcome: Outcome) -> str:
    mark = {"completed": "ok", "interrupted": "--"}.get(outcome.status, "!!")
    duration = f"{outcome.duration:.2f}s" if outcome.duration is not None else "-"
    if outcome.is_completed:
        detail = f"objective={outcome.objective:g}" if outcome.objective is not None else ""
    else:
        detail = f"{outcome.reason}: {outcome.message}".splitlines()[0][:160]
    return (
        f"{mark} {outcome.trial_id} #{outcome.attempt} {outcome.status:<11} {duration:>8}  {detail}"
    )


def _summary(outcomes: list[Outcome], skipped: int) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    if skipped:
        parts.append(f"{skipped} not started (max broken reached)")
    text = f"{len(outcomes) + skipped} trials: " + ", ".join(parts or ["none"])
    done = [o for o in outcomes if o.objective is not None]
    if done:
        best = min(done, key=lambda o: o.objective or 0.0)
        text += f"\nbest: {best.trial_id} objective={best.objective:g}"
    return text


async def _run(args: argparse.Namespace) -> int:
    trials = _load_trials(args)
    consumer = consumer_from(args)
    for trial in trials:
        consumer.check(trial)
    outcomes: list[Outcome] = []
    async with (
        handle_signals(consumer) as signals,
        consumer.run_batch(trials, max_broken=args.max_broken) as batch,
    ):
        async for outcome in batch:
            outcomes.append(outcome)
            print(_line(outcome), flush=True)
    print(_summary(outcomes, len(batch.skipped)), flush=True)
    if signals:
        return EXIT_INTERRUPTED
    ok = all(o.status is Status.COMPLETED for o in outcomes) and not batch.skipped
    return EXIT_OK if ok else EXIT_FAILED


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
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
    _configure_logging(args.verbose - args.quiet)
    try:
        if args.command == "run":
            return anyio.run(_run, args)
    except (UsageError, SourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConsumerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
