"""
The consumer's own CPU time per trial, against a bare ``open_process`` + ``wait`` loop.

Wall-clock figures on a shared machine move by a factor of three from one minute to the next;
this process's CPU time (``time.process_time()``: its own user and system time, not its
children's) moves much less, so it compares two versions of the executor on a busy machine.
``sh -c`` trials (about 1 ms each) with their directories in ``/dev/shm``, so that neither the
scripts' start-up nor the disk hides the executor. Bare and consumer alternate within each run;
prints the medians of ``--runs`` runs and their ratio (bare / consumer: higher is better).

    python benchmarks/cpu.py [--backend asyncio|trio] [--trials 300] [--jobs 8] [--runs 5]
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

from async_consumer import Consumer, Trial
from async_consumer._supervise.childwatch import install

SH_TRIAL = ["/bin/sh", "-c", 'echo 1.0 > "$ORION_RESULTS_PATH"']


async def bare(n: int, jobs: int, base: Path) -> float:
    """CPU milliseconds of this process per trial of a bare loop under a semaphore."""
    limit = anyio.Semaphore(jobs)
    base.mkdir(parents=True)

    async def one(i: int) -> None:
        async with limit:
            results = base / f"r{i}"
            results.touch()
            process = await anyio.open_process(
                SH_TRIAL, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env={**os.environ, "ORION_RESULTS_PATH": str(results)},
                start_new_session=True,
            )  # fmt: skip
            await process.wait()
            await process.aclose()

    began = time.process_time()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return (time.process_time() - began) / n * 1e3


async def consumer(n: int, jobs: int, base: Path) -> float:
    """CPU milliseconds of this process per trial through ``Consumer.run_batch``."""
    runner = Consumer(SH_TRIAL, base_dir=base, max_concurrency=jobs, code_change="ignore")
    began = time.process_time()
    async with runner.run_batch([Trial(id=f"t{i}") for i in range(n)]) as outcomes:
        async for outcome in outcomes:
            if not outcome.is_completed:
                raise RuntimeError(outcome.message)
    return (time.process_time() - began) / n * 1e3


async def main(backend: str, trials: int, jobs: int, runs: int) -> None:
    """Alternate bare and consumer ``runs`` times; print the medians."""
    if backend == "asyncio":
        install()  # the bare loop without a thread per child on 3.11 (nothing to do on 3.12+)
    bare_ms, ours_ms = [], []
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-") as tmp:
        for run in range(runs):
            bare_ms.append(await bare(trials, jobs, Path(tmp) / f"bare-{run}"))
            ours_ms.append(await consumer(trials, jobs, Path(tmp) / f"consumer-{run}"))
    b, c = statistics.median(bare_ms), statistics.median(ours_ms)
    version = sys.version.split()[0]
    print(f"Python {version} {backend}, {trials} sh trials, {jobs} jobs, median of {runs} runs: "
          f"CPU ms a trial: bare {b:.3f}, consumer {c:.3f}, ratio {b / c:.3f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.backend, args.trials, args.jobs, args.runs, backend=args.backend)
