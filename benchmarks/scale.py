"""
A thousand trials at once: threads, memory, heartbeat lateness and wall time of the consumer.

1,000 concurrent trials of ``/bin/sleep 5``, each with a heartbeat every 0.5 s to the in-memory
store. Measures the consumer process's peak RSS and thread count, how late heartbeats come
(the gap between two beats of a trial, minus the interval: p50 and p99), and the wall time
from the first launch to the last outcome. Targets: at most 10 threads, p99 lateness under
100 ms, wall time under 9 s. The ratio line compares the wall time with the 5 s the trials sleep.

The process runs with ``tune_gc()`` and ``install_child_watcher()``, as the ``async-consumer``
command does; ``--gc python``
keeps Python's default collector settings instead, under which full collections (40 to 130 ms
with 1,000 trials running) make heartbeats late every few seconds.

    python benchmarks/scale.py [--trials 1000] [--seconds 5] [--heartbeat 0.5] [--runs 3]
                               [--gc tuned|python]
    python benchmarks/scale.py --cli [...]   # the same from the command line: scale_cli.py
"""

from __future__ import annotations

import argparse
import itertools
import logging
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio

from async_consumer import Consumer, Lease, Trial, install_child_watcher, tune_gc
from async_consumer.stores import MemoryStore


class TimedStore:
    """The memory store, with the time of every heartbeat recorded."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.beats: dict[str, list[float]] = {}

    async def heartbeat(self, lease: Lease) -> None:
        self.beats.setdefault(lease.trial_id, []).append(time.perf_counter())
        await self.store.heartbeat(lease)


def _os_threads() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


async def one_run(trials: int, seconds: float, heartbeat: float) -> dict[str, float]:
    """Run the batch once and return its figures."""
    store = MemoryStore()
    await store.add(Trial(id=f"t{i}") for i in range(trials))
    leases = [lease for _ in range(trials) if (lease := await store.reserve("bench")) is not None]
    timed = TimedStore(store)
    peak_threads = 0
    with tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp:
        consumer = Consumer(["/bin/sleep", str(seconds)], base_dir=tmp, max_concurrency=trials,
                            store=timed, heartbeat=heartbeat, code_change="ignore")  # fmt: skip
        start = time.perf_counter()
        completed = 0
        async with anyio.create_task_group() as tg:

            async def sample() -> None:
                nonlocal peak_threads
                while True:
                    peak_threads = max(peak_threads, _os_threads(), threading.active_count())
                    await anyio.sleep(0.25)

            tg.start_soon(sample)
            async with consumer.run_batch(leases) as outcomes:
                async for outcome in outcomes:
                    completed += (
                        outcome.status == "completed" or outcome.reason == "missing_results"
                    )
                    await store.finish(leases[int(outcome.trial_id[1:])], outcome)
            wall = time.perf_counter() - start
            tg.cancel_scope.cancel()
    late = [
        (b - a - heartbeat) * 1000
        for beats in timed.beats.values()
        for a, b in itertools.pairwise(beats)
    ]
    quantiles = statistics.quantiles(late, n=100)
    return {
        "wall_s": wall,
        "threads": peak_threads,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "late_p50_ms": statistics.median(late),
        "late_p99_ms": quantiles[98],
        "beats": len(late),
        "ended": completed,
    }


async def main(trials: int, seconds: float, heartbeat: float, runs: int, collector: str) -> None:
    """Run ``runs`` times and print each run and the medians."""
    results = [await one_run(trials, seconds, heartbeat) for _ in range(runs)]
    keys = list(results[0])
    print(f"{'run':<7}" + "".join(f"{k:>13}" for k in keys))
    for i, row in enumerate(results, start=1):
        print(f"{i:<7}" + "".join(f"{row[k]:>13.1f}" for k in keys))
    median = {k: statistics.median(r[k] for r in results) for k in keys}
    print(f"{'median':<7}" + "".join(f"{median[k]:>13.1f}" for k in keys))
    print(
        f"ratio wall / sleep: {median['wall_s'] / seconds:.3f} ({median['wall_s']:.2f} s for "
        f"{seconds:g} s trials); threads {median['threads']:.0f} (target <= 10); "
        f"heartbeat p99 late {median['late_p99_ms']:.1f} ms (target < 100); wall target < 9 s; "
        f"garbage collector: {collector}"
    )


if __name__ == "__main__" and "--cli" in sys.argv:
    sys.argv.remove("--cli")
    sys.path.insert(0, str(Path(__file__).parent))
    import scale_cli

    scale_cli.main()
elif __name__ == "__main__":
    logging.getLogger("async_consumer").setLevel(logging.ERROR)  # /bin/sleep writes no results
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gc", choices=["tuned", "python"], default="tuned",
                        help="tune_gc() as the command does (default), or Python's defaults")  # fmt: skip
    args = parser.parse_args()
    install_child_watcher()  # no thread per child on Python 3.11
    if args.gc == "tuned":
        tune_gc()
    anyio.run(main, args.trials, args.seconds, args.heartbeat, args.runs, args.gc)
