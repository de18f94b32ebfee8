"""
Load: 5,000 trivial trials through a ``Worker`` on a SQLite store, 8 at a time.

Each trial is ``sh -c`` appending its id to a shared log and writing its results (about 1 ms of
work), so what is measured is the worker, the consumer and the store. Checks that every trial
completed exactly once, both in the store (one attempt each, status completed) and in the shared
log (each id written once); reports trials per second and the worker process's RSS after the
first 500 outcomes and after all of them. The ratio line is RSS after all / RSS after 500
(target: within 10 %, i.e. at most 1.10). Temporary files go under the current directory.

    python benchmarks/load.py [--trials 5000] [--early 500] [--concurrency 8] [--json]

``--json`` prints the figures as one JSON object instead (the tests read it).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from async_consumer import Consumer, Outcome, Trial, TrialStatus
from async_consumer._worker.worker import Worker
from async_consumer.stores import SQLiteStore

TRIAL = 'echo "$ORION_TRIAL_ID" >> "$1"; echo 1 > "$ORION_RESULTS_PATH"'


@dataclass(frozen=True, slots=True)
class Figures:
    """What one load run measured."""

    trials: int
    completed: int
    runs_once: int
    attempts_once: int
    seconds: float
    rss_early: int
    rss_late: int

    @property
    def rate(self) -> float:
        """Trials per second, from the worker's start to its end."""
        return self.trials / self.seconds

    @property
    def rss_ratio(self) -> float:
        """RSS after every trial over RSS after the early ones."""
        return self.rss_late / self.rss_early

    @property
    def is_exactly_once(self) -> bool:
        """Whether every trial completed, ran once and has one attempt in the store."""
        return self.trials == self.completed == self.runs_once == self.attempts_once


def rss_bytes() -> int:
    """This process's resident set size, after a garbage collection."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


async def run_load(trials: int, early: int, concurrency: int, directory: Path) -> Figures:
    """Add ``trials`` trivial trials to a fresh store in ``directory``, run them, count them."""
    runs = directory / "runs.log"
    rss_early = 0
    count = 0

    def on_outcome(outcome: Outcome) -> None:
        nonlocal rss_early, count
        count += 1
        if count == early:
            rss_early = rss_bytes()

    async with SQLiteStore(directory / "store.db") as store:
        await store.add(Trial(id=f"t{i:05d}") for i in range(trials))
        consumer = Consumer(["sh", "-c", TRIAL, "sh", str(runs)], base_dir=directory / "trials",
                            max_concurrency=concurrency, store=store, grace=1.0,
                            code_change="ignore")  # fmt: skip
        worker = Worker(store, consumer, name="load", on_outcome=on_outcome)
        start = time.perf_counter()
        await worker.run()
        seconds = time.perf_counter() - start
        rss_late = rss_bytes()
        stored = await store.list()
    ran = Counter(runs.read_text().split())
    return Figures(
        trials=trials,
        completed=sum(s.status is TrialStatus.COMPLETED for s in stored),
        runs_once=sum(ran[s.id] == 1 for s in stored) if len(ran) == trials else -len(ran),
        attempts_once=sum(len(s.attempts) == 1 for s in stored),
        seconds=seconds,
        rss_early=rss_early,
        rss_late=rss_late,
    )


def _table(figures: Figures, early: int) -> str:
    mib = 1024 * 1024
    rows = [
        ("trials", f"{figures.trials}"),
        ("completed (store)", f"{figures.completed}"),
        ("ran exactly once (log)", f"{figures.runs_once}"),
        ("one attempt each (store)", f"{figures.attempts_once}"),
        ("wall time", f"{figures.seconds:.1f} s"),
        ("trials per second", f"{figures.rate:.0f}"),
        (f"RSS after {early}", f"{figures.rss_early / mib:.1f} MiB"),
        (f"RSS after {figures.trials}", f"{figures.rss_late / mib:.1f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>10}" for name, value in rows)


def main() -> None:
    """Run the load once and print its table and the RSS ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--early", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".", prefix=".load-") as tmp:
        figures = anyio.run(run_load, args.trials, args.early, args.concurrency, Path(tmp))
    if args.json:
        extra = {"rate": figures.rate, "rss_ratio": figures.rss_ratio,
                 "is_exactly_once": figures.is_exactly_once}  # fmt: skip
        print(json.dumps(asdict(figures) | extra))
        return
    print(_table(figures, args.early))
    verdict = "exactly once" if figures.is_exactly_once else "NOT exactly once"
    print(f"{verdict}; {figures.rate:.0f} trials/s")
    print(f"RSS ratio (after {args.trials} / after {args.early}): {figures.rss_ratio:.3f}")


if __name__ == "__main__":
    main()
