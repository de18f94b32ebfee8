"""
What the consumer costs per trial, against a bare ``open_process`` + ``wait`` loop.

500 trivial trials (a ``python -c`` script writing its results file) at concurrency 1, 2, 8 and
32, through ``Consumer.run_batch``, and the same script through a bare loop under the same
semaphore, interleaved in the same process. The bare loop's children are reaped by asyncio's
child watcher (on 3.11 the pidfd watcher of ``childwatch.install()``, installed first, so that
neither side has a thread per child); the consumer reaps its own with ``wait4``. A shell trial (``sh -c``, about 1 ms) shows the executor's own
cost where the script's start-up no longer hides it. Prints trials/s and the ratio; the median
of ``--runs`` runs.

A trial creates a directory and four files where the bare loop creates one file, so the disk's
cost of creating a file weighs on the ratio. On a journal-less ext4 (this machine's), that cost
jumps from about 0.02 ms to 0.5 ms for one to six minutes after many files were deleted (the
allocator skips recently freed inodes one by one): a test run or this benchmark's own clean-up.
So the benchmark first measures it, and waits (up to ``--settle`` seconds) while it is high.

    python benchmarks/overhead.py [--trials 500] [--runs 5] [--jobs 1,2,8,32] [--settle 420]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from async_consumer import Consumer, Trial, install_child_watcher

PY_TRIAL = [
    sys.executable,
    "-c",
    "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1.0')",
]
SH_TRIAL = ["/bin/sh", "-c", 'echo 1.0 > "$ORION_RESULTS_PATH"']


async def bare(argv: list[str], n: int, jobs: int, base: Path) -> float:
    """Trials per second of a bare loop: open_process, wait, under a semaphore."""
    limit = anyio.Semaphore(jobs)
    base.mkdir(parents=True, exist_ok=True)

    async def one(i: int) -> None:
        async with limit:
            results = base / f"r{i}"
            results.touch()
            env = {**os.environ, "ORION_RESULTS_PATH": str(results)}
            process = await anyio.open_process(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip
            await process.wait()
            await process.aclose()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return n / (time.perf_counter() - start)


async def consumer(argv: list[str], n: int, jobs: int, base: Path) -> float:
    """Trials per second through Consumer.run_batch."""
    runner = Consumer(argv, base_dir=base, max_concurrency=jobs, code_change="ignore")
    trials = [Trial(id=f"t{i}") for i in range(n)]
    start = time.perf_counter()
    completed = 0
    async with runner.run_batch(trials) as outcomes:
        async for outcome in outcomes:
            completed += outcome.is_completed
    elapsed = time.perf_counter() - start
    if completed != n:
        msg = f"only {completed} of {n} trials completed"
        raise RuntimeError(msg)
    return n / elapsed


SETTLED = 0.0001
"""Creating a file costs less than this (seconds of CPU) on a disk not busy with deletions."""


def creation_cost(where: Path, files: int = 200) -> float:
    """CPU seconds this process spends to create one empty file in a new directory of ``where``."""
    probe = Path(tempfile.mkdtemp(dir=where, prefix="probe-"))
    start = time.process_time()
    for i in range(files):
        os.close(os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.process_time() - start) / files  # the files stay: deleting them would cost more


async def settle(where: Path, patience: float) -> float:
    """Wait (up to ``patience`` seconds) until creating a file is cheap; return what it costs."""
    cost = creation_cost(where)
    deadline = time.monotonic() + patience
    while cost > SETTLED and time.monotonic() < deadline:
        print(f"creating a file costs {cost * 1e3:.2f} ms here (the disk is busy with recent "
              f"deletions); waiting for it to settle", file=sys.stderr)  # fmt: skip
        await anyio.sleep(15)
        cost = creation_cost(where)
    return cost


async def main(trials: int, runs: int, jobs: list[int], where: str, patience: float) -> None:
    """Run every configuration ``runs`` times, interleaved, and print medians."""
    install_child_watcher()
    rows = []
    # trial directories on the project's disk, as a user's ./.async-consumer would be
    # (--dir /dev/shm puts them in memory, to see the executor without the disk's cost)
    with tempfile.TemporaryDirectory(dir=where, prefix=".bench-") as tmp:
        cost_before = await settle(Path(tmp), patience)
        for name, argv in (("python", PY_TRIAL), ("sh", SH_TRIAL)):
            for j in jobs:
                bare_rates, ours = [], []
                for run in range(runs):
                    base = Path(tmp) / f"{name}-{j}-{run}"
                    # alternate who goes first, so that a slow spell of this shared machine
                    # does not always fall on the same side
                    if run % 2:
                        ours.append(await consumer(argv, trials, j, base / "consumer"))
                        bare_rates.append(await bare(argv, trials, j, base / "bare"))
                    else:
                        bare_rates.append(await bare(argv, trials, j, base / "bare"))
                        ours.append(await consumer(argv, trials, j, base / "consumer"))
                b, c = statistics.median(bare_rates), statistics.median(ours)
                ratios = [o / r for o, r in zip(ours, bare_rates, strict=True)]
                rows.append((name, j, b, c, statistics.median(ratios)))
        cost_after = creation_cost(Path(tmp))
    print(f"creating a file: {cost_before * 1e3:.3f} ms before, {cost_after * 1e3:.3f} ms after")
    print(f"{'trial':<7} {'jobs':>4} {'bare/s':>9} {'consumer/s':>11} {'ratio':>6}")
    for name, j, b, c, ratio in rows:
        print(f"{name:<7} {j:>4} {b:>9.1f} {c:>11.1f} {ratio:>6.3f}")
    python_ratios = [r[4] for r in rows if r[0] == "python"]
    print(
        f"ratio (consumer / bare, python trial, median of {runs} runs): "
        f"min {min(python_ratios):.3f} over jobs {','.join(map(str, jobs))}; target >= 0.9"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", default="1,2,8,32")
    parser.add_argument("--dir", default=".", help="where trial directories go (default: here)")
    parser.add_argument("--settle", type=float, default=420.0,
                        help="seconds to wait at most for a disk busy with deletions")  # fmt: skip
    args = parser.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    anyio.run(main, args.trials, args.runs, jobs, args.dir, args.settle)
