"""
What the command costs on top of the library: ``async-consumer run -j J`` against a bare loop.

For each trial (a trivial ``python -c`` script and a ``sh -c`` script of about 1 ms, each
writing its results file) and each concurrency, ``async-consumer run -j J`` runs N trials from a
fresh SQLite store and a parameter file in a temporary directory (a subprocess, output to
/dev/null or, with ``--tty``, to a pseudo-terminal so that the progress bar is drawn), and a
bare loop in this process runs the same command N times with ``anyio.open_process`` + ``wait``
under a semaphore of J. The two alternate which goes first; medians of ``--runs`` rounds.
A trial of the command creates three directories and three files where the bare loop creates
one file, so, as ``overhead.py`` does, the script first waits (up to ``--settle`` seconds) while
creating a file is slow (a disk busy with recent deletions), and deletes nothing before the end;
``--dir /dev/shm`` leaves the disk out.

Columns:
  - ``bare/s``, ``cli/s``: trials a second, end to end (the command's start-up included);
  - ``fixed``: seconds the same command takes when it has nothing left to run (start-up, the
    parameter file read and added, the summary): ``cli-fixed/s`` is N over the run's wall time
    minus that, the pace once started;
  - ``cli ms``: CPU time (user + sys) of the command's own process (and its watchdog) a
    trial: the whole run's, from ``wait4``, less the trials' own (each outcome's
    ``cpu_seconds``) and less the CPU time of the run with nothing left (start-up);
    ``bare ms``: this process's CPU time a trial in the bare loop. These move less with the
    machine's load than the rates do, but they do move (a busy machine's caches).
  - ``ceiling``: the bare loop's wall time over itself plus the start-up floor, a process that
    only imports what the run path cannot do without (anyio, asyncio, sqlite3 and one pydantic
    model built, as ``startup.py``'s ``floor``), timed in the same round. It is the ratio a
    command on these libraries would reach if, once started, it ran its trials exactly as fast
    as the bare loop: a target above it cannot be met by such a command.

With ``--library``, each round also runs the same trials through the library alone
(``Consumer.run_batch`` in this process: the trials' files, results and outcomes, no store and
no command line), and ``lib/s`` shows its pace: what the command adds is the gap from it.

    python benchmarks/cli_overhead.py [--trials-python 200] [--trials-sh 1000] [--runs 3]
        [--jobs 1,2,8,32] [--kinds python,sh] [--tty] [--dir .] [--settle 420] [--library]
"""

from __future__ import annotations

import argparse
import math
import os
import pty
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio

from async_consumer import Consumer, Trial, install_child_watcher
from async_consumer.stores import store_from_url

sys.path.insert(0, str(Path(__file__).parent))
from overhead import creation_cost, settle  # the benchmark beside this one
from startup import FLOOR, timed  # FLOOR: what any command on these libraries imports first

PY_TRIAL = [
    sys.executable,
    "-c",
    "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1.0')",
]
SH_TRIAL = ["/bin/sh", "-c", 'sleep 0.001; echo 1.0 > "$ORION_RESULTS_PATH"']
KINDS = {"python": PY_TRIAL, "sh": SH_TRIAL}
COMMAND = Path(sys.executable).parent / "async-consumer"


async def bare(argv: list[str], n: int, jobs: int, base: Path) -> tuple[float, float]:
    """Wall seconds and own CPU seconds of a bare loop: open_process, wait, under a semaphore."""
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

    cpu, start = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return time.perf_counter() - start, time.process_time() - cpu


async def library(argv: list[str], n: int, jobs: int, base: Path) -> float:
    """Wall seconds of the library alone: ``Consumer.run_batch`` in this process, no store."""
    consumer = Consumer(argv, base_dir=base, max_concurrency=jobs, code_change="ignore")
    start = time.perf_counter()
    async with consumer.run_batch(Trial(id=f"t{i}", params={}) for i in range(n)) as outcomes:
        completed = [outcome async for outcome in outcomes if outcome.is_completed]
    wall = time.perf_counter() - start
    if len(completed) != n:
        msg = f"the library completed only {len(completed)} of {n} trials"
        raise RuntimeError(msg)
    return wall


def _drain(fd: int) -> None:
    """Read a pseudo-terminal's output until it closes (as a terminal would show it)."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # EIO: the other side is closed
        pass
    finally:
        os.close(fd)


def command(argv: list[str], jobs: int, base: Path, *, tty: bool) -> tuple[float, float]:
    """Wall seconds and CPU seconds (with every descendant's) of one ``async-consumer run``."""
    cmd = [str(COMMAND), "run", "--params", str(base / "params.jsonl"), "-j", str(jobs)]
    cmd += ["--store", f"sqlite:///{base / 'store.db'}", "--base-dir", str(base / "trials")]
    cmd += ["--code-change", "ignore", "--", *argv]
    reader = None
    if tty:
        master, slave = pty.openpty()
        reader = threading.Thread(target=_drain, args=(master,))
        reader.start()
        out: int = slave
    else:
        out = subprocess.DEVNULL
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=base)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if reader is not None:
        os.close(slave)
        reader.join()
    if child.returncode != 0:
        msg = f"{cmd} exited with {child.returncode}"
        raise RuntimeError(msg)
    return wall, usage.ru_utime + usage.ru_stime


async def trials_cpu(base: Path, n: int) -> float:
    """The CPU seconds the trials' scripts used, from their outcomes."""
    async with store_from_url(f"sqlite:///{base / 'store.db'}") as store:
        stored = await store.list()
    outcomes = [s.outcome for s in stored if s.outcome is not None and s.outcome.is_completed]
    if len(outcomes) != n:
        msg = f"only {len(outcomes)} of {n} trials completed"
        raise RuntimeError(msg)
    return sum(o.cpu_seconds or 0.0 for o in outcomes)


async def cli(argv: list[str], n: int, jobs: int, base: Path, tty: bool) -> dict[str, float]:
    """One run of the command over a fresh store; then the same again, with nothing left."""
    base.mkdir(parents=True)
    (base / "params.jsonl").write_text("".join(f'{{"i": {i}}}\n' for i in range(n)))
    wall, cpu = await anyio.to_thread.run_sync(lambda: command(argv, jobs, base, tty=tty))
    own = cpu - await trials_cpu(base, n)
    fixed, fixed_cpu = await anyio.to_thread.run_sync(lambda: command(argv, jobs, base, tty=tty))
    return {"wall": wall, "cpu": own - fixed_cpu, "fixed": fixed}


async def one_round(
    argv: list[str], n: int, jobs: int, base: Path, run: int, args: argparse.Namespace
) -> tuple[tuple[float, float], dict[str, float]]:
    # alternate who goes first, so that a slow spell of this shared machine does not always
    # fall on the same side
    if run % 2:
        ours = await cli(argv, n, jobs, base / "cli", args.tty)
        theirs = await bare(argv, n, jobs, base / "bare")
    else:
        theirs = await bare(argv, n, jobs, base / "bare")
        ours = await cli(argv, n, jobs, base / "cli", args.tty)
    ours["library"] = await library(argv, n, jobs, base / "lib") if args.library else math.nan
    ours["floor"] = timed([sys.executable, "-c", FLOOR], base)[0]  # the start-up floor's wall
    return theirs, ours  # the files stay until the end: deleting them slows creating others


async def main(args: argparse.Namespace) -> None:
    """Run every configuration ``runs`` times, interleaved, and print medians."""
    install_child_watcher()
    jobs = [int(j) for j in args.jobs.split(",")]
    counts = {"python": args.trials_python, "sh": args.trials_sh}
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-cli-") as tmp:
        cost_before = await settle(Path(tmp), args.settle)
        for name in args.kinds.split(","):
            argv, n = KINDS[name], counts[name]
            for j in jobs:
                rounds = [
                    await one_round(argv, n, j, Path(tmp) / f"{name}-{j}-{r}", r, args)
                    for r in range(args.runs)
                ]
                med = statistics.median
                ratio = med(b[0] / c["wall"] for b, c in rounds)
                paced = med(b[0] / max(c["wall"] - c["fixed"], 1e-9) for b, c in rounds)
                rows.append(
                    (name, j, n / med(b[0] for b, _ in rounds), n / med(c["wall"] for _, c in rounds),
                     med(c["fixed"] for _, c in rounds), ratio, paced,
                     1e3 * med(b[1] for b, _ in rounds) / n, 1e3 * med(c["cpu"] for _, c in rounds) / n,
                     med(b[0] / (b[0] + c["floor"]) for b, c in rounds),
                     n / med(c["library"] for _, c in rounds), med(b[0] / c["library"] for b, c in rounds))
                )  # fmt: skip
        cost_after = creation_cost(Path(tmp))
    load = max(load, os.getloadavg()[0])
    print(f"creating a file: {cost_before * 1e3:.3f} ms before, {cost_after * 1e3:.3f} ms after")
    print(f"load average (1 min) up to {load:.1f}; tty: {args.tty}; median of {args.runs} rounds")
    head: tuple[str, ...] = ("trial", "jobs", "bare/s", "cli/s", "fixed s", "ratio", "paced")
    head += ("bare ms", "cli ms", "ceiling")
    head += ("lib/s",) if args.library else ()
    print("{:<7} {:>4} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8}".format(*head, ""))
    for row in rows:
        line = "{:<7} {:>4} {:>8.1f} {:>8.1f} {:>8.2f} {:>6.3f} {:>6.3f} {:>8.2f} {:>7.2f} {:>7.3f}"
        print(line.format(*row[:10]) + (f" {row[10]:>8.1f}" if args.library else ""))
    for name, target in (("python", 0.9), ("sh", 0.7)):
        mine = [r for r in rows if r[0] == name]
        if not mine:
            continue
        print(
            f"ratio (cli / bare, {name} trial, end to end): min {min(r[5] for r in mine):.3f} over "
            f"jobs {args.jobs}; without the fixed cost: min {min(r[6] for r in mine):.3f}; "
            f"target >= {target}"
        )
        print(
            f"ceiling ({name} trial): max {max(r[9] for r in mine):.3f}, min "
            f"{min(r[9] for r in mine):.3f} (the bare loop with the floor's start-up added: the "
            "ratio of a command that imports the run path's libraries, then runs as the bare loop)"
        )
        if args.library:
            print(
                f"ratio (library alone / bare, {name} trial): min {min(r[11] for r in mine):.3f} "
                f"(run_batch in this process: no store, no start-up)"
            )
    spent = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"(children's CPU this whole run: {spent.ru_utime + spent.ru_stime:.1f} s)", file=sys.stderr
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials-python", type=int, default=200)
    parser.add_argument("--trials-sh", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", default="1,2,8,32")
    parser.add_argument("--kinds", default="python,sh", help="trials to run: python, sh or both")
    parser.add_argument("--tty", action="store_true", help="the command's output on a terminal")
    parser.add_argument("--dir", default=".", help="where the stores and trial directories go")
    parser.add_argument("--library", action="store_true",
                        help="also the library alone (run_batch in this process)")  # fmt: skip
    parser.add_argument("--settle", type=float, default=420.0,
                        help="seconds to wait at most for a disk busy with deletions")  # fmt: skip
    anyio.run(main, parser.parse_args())
