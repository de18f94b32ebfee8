"""
Ten thousand ten-second trials at once, from the command line, against ``posix_spawn`` (issue 15).

Three ways to run 10,000 ``sh -c 'echo RESULT > "$ORION_RESULTS_PATH"; exec sleep 10'``, in the
same script, one after the other:

- **floor**: ``os.posix_spawn`` of every script (each in a session of its own, its own results
  path in the environment), then ``waitpid`` of each: the least any executor could take;
- **sqlite**: ``async-consumer run -j 10000`` on a fresh SQLite store, from a parameter file of
  10,000 lines;
- **postgres**: ``async-consumer add`` of the same file to a fresh PostgreSQL schema, then 4
  ``async-consumer worker -j 2500`` at once (``--postgres URL``, default from
  ``ASYNC_CONSUMER_TEST_POSTGRES_URL``); the schema is dropped afterwards.

Measures the wall time of each (for postgres, from the start of ``add`` to the last worker's
exit), the trials completed (from the store), how spread out the scripts' starts were (first to
last ``started_at`` of the outcomes), and for each command's process its peak RSS (its own
``ru_maxrss``, from ``wait4``) and its peak thread count (``/proc/PID/status``, sampled every
0.1 s). Targets: at most 1.5 times the floor's wall time, 150 MiB and 10 threads a process.

Every command runs in a process group of its own; if anything fails, the commands are stopped
(SIGINT, then SIGKILL: their watchdogs stop the trials) and any script still running whose
results path lies in this run's directory is killed.

    python benchmarks/many.py [--trials 10000] [--seconds 10] [--workers 4] [--runs 1]
                              [--only floor sqlite postgres] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

RESULT = '[{"name": "loss", "type": "objective", "value": 1}]'
COMMAND = shutil.which("async-consumer") or str(Path(sys.executable).with_name("async-consumer"))
SH = shutil.which("sh") or "/bin/sh"
POSTGRES = os.environ.get(
    "ASYNC_CONSUMER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def script(seconds: float) -> list[str]:
    """The trial: write an objective, then sleep (``exec``: one process a trial while it sleeps)."""
    return [SH, "-c", f"echo '{RESULT}' > \"$ORION_RESULTS_PATH\"; exec sleep {seconds:g}"]


def floor(trials: int, seconds: float, tmp: Path) -> dict[str, float]:
    """``posix_spawn`` every script in a new session, then reap them all: the wall time."""
    out = tmp / "floor"
    out.mkdir()
    argv, base = script(seconds), dict(os.environ)
    pids: list[int] = []
    start, cpu = time.perf_counter(), time.process_time()
    try:
        for i in range(trials):
            env = {**base, "ORION_RESULTS_PATH": f"{out}/{i}.json"}
            pids.append(os.posix_spawn(argv[0], argv, env, setsid=True))
        spawned = time.perf_counter() - start
        while pids:
            os.waitpid(pids[-1], 0)
            pids.pop()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    wall = time.perf_counter() - start
    done = sum(1 for _ in out.iterdir())
    cpu = time.process_time() - cpu
    return {
        "wall_s": wall,
        "completed": done,
        "starts_s": spawned,
        "cpu_s": cpu,
        "rss_mib": 0,
        "threads": 1,
    }


class Commands:
    """Commands started in process groups of their own, sampled while they run."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("ab")
        self.children: list[subprocess.Popen[bytes]] = []
        self.threads: dict[int, int] = {}
        self.rss_kib: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}

    def start(self, argv: Sequence[str], cwd: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new session, its output to the log."""
        child = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        self.children.append(child)
        return child

    def wait_all(self) -> None:
        """Wait for every command, sampling threads; reap each with ``wait4`` for its RSS."""
        running = {child.pid: child for child in self.children if child.returncode is None}
        while running:
            for pid, child in list(running.items()):
                self.threads[pid] = max(self.threads.get(pid, 0), _threads(pid))
                self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), _cpu(pid))
                found, status, usage = os.wait4(pid, os.WNOHANG)
                if found:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    self.rss_kib[pid] = usage.ru_maxrss
                    del running[pid]
            time.sleep(0.1)

    def stop_all(self) -> None:
        """Stop whatever still runs: SIGINT to each group, then SIGKILL after 20 s."""
        for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
            alive = [c for c in self.children if c.poll() is None]
            for child in alive:
                _killpg(child.pid, sig)
            for child in alive:
                try:
                    child.wait(wait)
                except subprocess.TimeoutExpired:
                    pass

    def close(self) -> None:
        """Close the log."""
        self.log.close()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu(pid: int) -> float:
    """The CPU time of the process itself (not its children), in seconds; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kill_strays(tmp: Path) -> int:
    """SIGKILL every process of ours whose results path lies in ``tmp``; how many there were."""
    marker = f"ORION_RESULTS_PATH={tmp}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ:
            _killpg(int(entry.name), signal.SIGKILL)
            killed += 1
    return killed


def _times(rows: Sequence[tuple[object, ...]], launched: float, ended: float) -> dict[str, float]:
    """From (started_at, ended_at) of the outcomes: how long from the launch to the first start,
    from the first start to the last, and from the last end to the command's exit."""
    starts = sorted(datetime.fromisoformat(str(r[0])).timestamp() for r in rows if r[0])
    ends = sorted(datetime.fromisoformat(str(r[1])).timestamp() for r in rows if r[1])
    if not starts or not ends:
        return {}
    return {"head_s": starts[0] - launched, "starts_s": starts[-1] - starts[0],
            "tail_s": ended - ends[-1]}  # fmt: skip


def via_sqlite(trials: int, seconds: float, tmp: Path, params: Path) -> dict[str, float]:
    """``async-consumer run -j TRIALS`` on a fresh SQLite store."""
    db = tmp / "store.db"
    argv = [COMMAND, "run", "--params", str(params), "-j", str(trials), "--store",
            f"sqlite:///{db}", "--base-dir", str(tmp / "trials-sqlite"), "--code-change",
            "ignore", "--", *script(seconds)]  # fmt: skip
    commands = Commands(tmp / "sqlite.log")
    start, launched = time.perf_counter(), time.time()
    try:
        child = commands.start(argv, tmp)
        commands.wait_all()
    finally:
        commands.stop_all()
        commands.close()
    wall, ended = time.perf_counter() - start, time.time()
    with sqlite3.connect(db) as conn:
        (done,) = conn.execute("SELECT count(*) FROM trials WHERE status = 'completed'").fetchone()
        rows = conn.execute("SELECT json_extract(outcome, '$.started_at'), "
                            "json_extract(outcome, '$.ended_at') FROM attempts").fetchall()  # fmt: skip
    return {"wall_s": wall, "completed": done, **_times(rows, launched, ended), "exit": child.returncode,
            "rss_mib": commands.rss_kib[child.pid] / 1024, "cpu_s": commands.cpu_s[child.pid],
            "threads": commands.threads[child.pid]}  # fmt: skip


async def _pg(url: str, schema: str, query: str) -> list[tuple[object, ...]]:
    import asyncpg  # the store's own driver

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(query.replace("{s}", f'"{schema}"'))]
    finally:
        await conn.close()


def via_postgres(
    trials: int, seconds: float, tmp: Path, params: Path, workers: int, url: str
) -> dict[str, float]:
    """``async-consumer add``, then ``workers`` times ``async-consumer worker`` on a fresh schema."""
    schema = f"bench_many_{os.getpid()}_{int(time.time())}"
    store = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    jobs = str(-(-trials // workers))
    worker = [COMMAND, "worker", "--store", store, "-j", jobs, "--base-dir",
              str(tmp / "trials-postgres"), "--code-change", "ignore", "--", *script(seconds)]  # fmt: skip
    commands = Commands(tmp / "postgres.log")
    start, launched = time.perf_counter(), time.time()
    try:
        add = commands.start([COMMAND, "add", "--params", str(params), "--store", store], tmp)
        commands.wait_all()
        added = time.perf_counter() - start
        fleet = [commands.start(worker, tmp) for _ in range(workers)]
        commands.wait_all()
        wall, ended = time.perf_counter() - start, time.time()
        ((done,),) = asyncio.run(
            _pg(url, schema, "SELECT count(*) FROM {s}.trials WHERE status = 'completed'")
        )
        rows = asyncio.run(
            _pg(
                url,
                schema,
                "SELECT outcome::json->>'started_at', outcome::json->>'ended_at' FROM {s}.attempts",
            )
        )
    finally:
        commands.stop_all()
        commands.close()
        asyncio.run(_pg(url, schema, "DROP SCHEMA IF EXISTS {s} CASCADE"))
    return {"wall_s": wall, "completed": done, **_times(rows, launched, ended),
            "exit": max(abs(c.returncode or 0) for c in [add, *fleet]), "add_s": added,
            "rss_mib": max(commands.rss_kib[c.pid] for c in fleet) / 1024,
            "cpu_s": sum(commands.cpu_s[c.pid] for c in fleet),
            "threads": max(commands.threads[c.pid] for c in fleet)}  # fmt: skip


def one_round(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each of the chosen ways once, in a fresh directory; their figures."""
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-many-", dir=args.dir) as name:
        tmp = Path(name)
        params = tmp / "params.jsonl"
        params.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(args.trials)))
        failed = True
        try:
            for way in args.only:
                if way == "floor":
                    rows[way] = floor(args.trials, args.seconds, tmp)
                elif way == "sqlite":
                    rows[way] = via_sqlite(args.trials, args.seconds, tmp, params)
                else:
                    rows[way] = via_postgres(args.trials, args.seconds, tmp, params,
                                             args.workers, args.postgres)  # fmt: skip
                print(f"  {way}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[way].items()),
                      flush=True)  # fmt: skip
            failed = any(row.get("exit", 0) for row in rows.values())
        finally:
            if strays := kill_strays(tmp):
                print(f"killed {strays} stray scripts", file=sys.stderr)
            for log in tmp.glob("*.log") if failed else ():
                if text := log.read_text(errors="replace"):
                    print(f"--- {log.name} (last lines)\n{text[-1500:]}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", nargs="+", default=["floor", "sqlite", "postgres"],
                        choices=["floor", "sqlite", "postgres"])  # fmt: skip
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--dir", default=None, help="where the trials' directories go")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; {args.trials} x sh -c "
          f"'...; exec sleep {args.seconds:g}'; {args.workers} PostgreSQL workers")  # fmt: skip
    rounds = [one_round(args) for _ in range(args.runs)]
    keys = ["wall_s", "completed", "head_s", "starts_s", "tail_s", "cpu_s", "rss_mib", "threads"]
    print(f"{'way':<10}" + "".join(f"{k:>11}" for k in keys) + f"{'ratio':>9}")
    medians = {}
    for way in args.only:
        medians[way] = {k: statistics.median(r[way].get(k, 0) for r in rounds) for k in keys}
        ratio = medians[way]["wall_s"] / medians.get("floor", medians[way])["wall_s"]
        print(f"{way:<10}" + "".join(f"{medians[way][k]:>11.2f}" for k in keys) + f"{ratio:>9.3f}")
    print(f"load now {os.getloadavg()[0]:.1f}")
    if "floor" in medians:
        line = ", ".join(
            f"{way} {m['wall_s'] / medians['floor']['wall_s']:.3f} ({m['rss_mib']:.0f} MiB, "
            f"{m['threads']:.0f} threads, {m['completed']:.0f} completed)"
            for way, m in medians.items() if way != "floor"
        )  # fmt: skip
        print(f"ratio wall / posix_spawn floor ({medians['floor']['wall_s']:.2f} s): {line}; "
              "target <= 1.5, <= 150 MiB, <= 10 threads")  # fmt: skip


if __name__ == "__main__":
    main()
