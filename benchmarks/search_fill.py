"""
How busy a search keeps its slots: ``run -n`` (a free slot asks for the next trial at once)
against a batch-synchronous loop (ask ``j``, wait for all ``j``, repeat), on the same trials.

Each trial sleeps a log-normal time (median ``--median`` s, sigma ``--sigma``), drawn from its
parameter ``u ~ uniform(0, 1)``: both loops run the same ``--trials`` durations, in the same
order (the random sampler with ``--seed`` gives the k-th trial's ``u``). Busy = the sum of the
trials' durations / (wall x jobs), wall from the first trial's start to the last one's end.

    python benchmarks/search_fill.py                      # 200 trials, median 1 s, -j 8
    python benchmarks/search_fill.py --trials 40 --median 0.2   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from async_consumer import Consumer, Outcome, Trial, TrialStatus
from async_consumer._search.samplers import RandomSampler
from async_consumer._search.space import Space
from async_consumer.stores import SQLiteStore

SLEEP = (
    "import json, os, sys, time, statistics; u = float(sys.argv[sys.argv.index('-u') + 1]); "
    "time.sleep({median} * 2.718281828459045 ** ({sigma} * statistics.NormalDist().inv_cdf(u))); "
    "json.dump(u, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)
PRIOR = "uniform(0.0001, 0.9999, precision=6)"


def _busy(outcomes: list[Outcome], jobs: int) -> tuple[float, float, float]:
    """(sum of durations, wall from first start to last end, busy fraction)."""
    starts = [o.started_at for o in outcomes if o.started_at is not None]
    ends = [o.ended_at for o in outcomes if o.ended_at is not None]
    work = sum(o.duration or 0.0 for o in outcomes)
    wall = (max(ends) - min(starts)).total_seconds()
    return work, wall, work / (wall * jobs)


def _ideal(outcomes: list[Outcome], jobs: int) -> float:
    """
    Busy fraction of the same durations, in the same order, each started the instant a slot
    frees (no gap at all): what any loop that cannot foresee durations reaches at best.
    """
    started = [(o.started_at, o) for o in outcomes if o.started_at is not None]
    ordered = [outcome for _, outcome in sorted(started, key=lambda pair: pair[0])]
    slots = [0.0] * jobs
    for outcome in ordered:
        slots.sort()
        slots[0] += outcome.duration or 0.0
    work = sum(o.duration or 0.0 for o in ordered)
    return work / (max(slots) * jobs)


def _search(args: argparse.Namespace, code: str, directory: Path) -> list[Outcome]:
    """``async-consumer run -n`` as a user runs it; the outcomes from its store."""
    store = directory / "search.db"
    command = [sys.executable, "-m", "async_consumer._cli", "-q", "run", "-n", str(args.trials)]
    command += ["-j", str(args.jobs), "--sampler", "random", "--seed", str(args.seed)]
    command += ["--store", f"sqlite:///{store}", "--base-dir", str(directory / "trials")]
    command += ["--", sys.executable, "-c", code, f"--u~{PRIOR}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    async def read() -> list[Outcome]:
        async with SQLiteStore(store) as opened:
            done = await opened.list(TrialStatus.COMPLETED)
        return [t.outcome for t in done if t.outcome is not None]

    return asyncio.run(read())


def _batches(args: argparse.Namespace, code: str, directory: Path) -> list[Outcome]:
    """The baseline: ask ``jobs`` trials, run them, wait for all of them, repeat."""
    sampler = RandomSampler(Space.of({"u": PRIOR}), seed=args.seed)
    trials = [Trial(id=f"t{k}", params=sampler.ask(k)) for k in range(1, args.trials + 1)]

    async def run() -> list[Outcome]:
        consumer = Consumer(
            [sys.executable, "-c", code, "-u", "{u}"],
            base_dir=directory / "batches",
            max_concurrency=args.jobs,
        )
        outcomes: list[Outcome] = []
        for start in range(0, len(trials), args.jobs):
            batch = await consumer.map(trials[start : start + args.jobs])
            outcomes += [o for o in batch if o is not None]
        return outcomes

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("-j", "--jobs", type=int, default=8)
    parser.add_argument("--median", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    code = SLEEP.format(median=args.median, sigma=args.sigma)
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}  {args.trials} trials, median {args.median:g} s, "
        f"sigma {args.sigma:g}, -j {args.jobs}, seed {args.seed}"
    )
    print(f"{'loop':<28}{'work s':>9}{'wall s':>9}{'busy':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, loop in (("run -n (no barrier)", _search), ("batch-synchronous", _batches)):
            outcomes = loop(args, code, Path(tmp))
            assert len(outcomes) == args.trials, (name, len(outcomes))
            work, wall, busy = _busy(outcomes, args.jobs)
            rows.append(busy)
            print(f"{name:<28}{work:>9.1f}{wall:>9.1f}{busy:>8.1%}")
            if not rows[1:]:
                print(
                    f"{'  no gaps, same order':<28}{'':>9}{'':>9}{_ideal(outcomes, args.jobs):>8.1%}"
                )
    print(f"busy ratio, search / batches: {rows[0] / rows[1]:.2f}")


if __name__ == "__main__":
    main()
