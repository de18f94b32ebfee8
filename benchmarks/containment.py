"""
What containment costs per trial: trivial shell trials in each mode, against ``session``.

``--trials`` trials of ``sh -c 'echo 1 > $ORION_RESULTS_PATH'`` (about 1 ms of script, so the
executor's own cost shows) through ``Consumer.run_batch`` at ``--jobs``, once per mode in each of
``--runs`` rounds, the modes interleaved so that a busy machine weighs on all of them alike.
Prints each mode's median milliseconds a trial and its ratio to ``session`` (the process group
only, what the consumer did before issue 28). Modes this machine lacks are left out (the cgroup
modes need root or a delegated cgroup).

    python benchmarks/containment.py [--trials 300] [--runs 5] [--jobs 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import anyio

from async_consumer import Consumer, Trial

MODES = ("session", "subreaper", "cgroup-v1", "cgroup-v2")
SHELL_TRIAL = ["sh", "-c", 'echo 1 > "$ORION_RESULTS_PATH"']


def _available(mode: str) -> bool:
    try:
        Consumer(SHELL_TRIAL, containment=mode)
    except ValueError:
        return False
    return True


async def _one_run(mode: str, trials: int, jobs: int, round_: int) -> float:
    with tempfile.TemporaryDirectory() as base:
        consumer = Consumer(SHELL_TRIAL, base_dir=base, containment=mode, max_concurrency=jobs)
        batch = [Trial(id=f"{mode}-{round_}-{n}") for n in range(trials)]
        start = time.perf_counter()
        async with consumer, consumer.run_batch(batch) as outcomes:
            completed = sum([outcome.is_completed async for outcome in outcomes])
        seconds = time.perf_counter() - start
    if completed != trials:
        msg = f"{mode}: {trials - completed} trials did not complete"
        raise SystemExit(msg)
    return seconds / trials * 1000


async def _main(trials: int, runs: int, jobs: int) -> None:
    modes = [mode for mode in MODES if _available(mode)]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_ in range(runs):
        for mode in modes:
            times[mode].append(await _one_run(mode, trials, jobs, round_))
    base = statistics.median(times["session"])
    print(f"{trials} shell trials, -j {jobs}, median of {runs} runs")
    for mode, values in times.items():
        median = statistics.median(values)
        runs_text = " ".join(f"{v:.2f}" for v in values)
        print(f"{mode:10s} {median:6.2f} ms/trial  x{median / base:.2f}  ({runs_text})")


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    anyio.run(_main, args.trials, args.runs, args.jobs)


if __name__ == "__main__":
    main()
