"""
A fleet of workers on one PostgreSQL through PgBouncer: real worker processes, and simulated ones.

Both parts start a PgBouncer of their own (transaction mode, ``--pool`` server connections, as
the postgres user when run as root) in front of ``--postgres`` (default
``ASYNC_CONSUMER_TEST_POSTGRES_URL``), and use a schema of their own, dropped after.

``real``: W ``async-consumer worker`` processes x ``-j J`` through PgBouncer, T trials of
``sleep S`` (each start logged). Prints lost trials (not completed), trials run more than once,
healthy trials reclaimed (no fault is injected, so any), the most server connections PostgreSQL
saw from the fleet (``pg_stat_activity``), heartbeat writes a second against W / interval, the
p50/p99 of a probe's store calls made beside the fleet through the same PgBouncer, PgBouncer's
average transaction and wait times, and the drain time against its floor (T x S / (W x J)).

    python benchmarks/fleet.py real [--workers 100] [--jobs 4] [--trials 2000] [--seconds 20]
                                    [--heartbeat 10] [--pool 20]

``simulate``: for each N, N workers as tasks of one process, each with a pool of one
connection through PgBouncer, making a worker's calls with the store's own code at a worker's
rates: ``reserve``, a trial of ``--trial`` seconds, ``finish``; every ``--heartbeat`` seconds
one ``heartbeat_many`` of its lease and its timer's ``record_worker``, ``held_leases`` and
``reclaim_stale``; their starts spread over the first interval. Prints trials a second, beat
writes a second, p50/p99 of each call (ms), and the CPU (% of one core) of PostgreSQL's backends
serving PgBouncer, of PgBouncer and of the generator itself. The first N whose p99 passes 100 ms
is the ceiling.

    python benchmarks/fleet.py simulate [--n 100 500 1000 2000 5000] [--duration 45]
                                        [--trial 30] [--heartbeat 10] [--pool 20]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from async_consumer._fleet import WorkerInfo
from async_consumer._models import Lease, Outcome, Result, Status, Trial
from async_consumer.stores import PostgresStore, Reservation, store_from_url
from async_consumer.stores._postgres_connection import connect_pool

COMMAND = shutil.which("async-consumer") or str(Path(sys.executable).with_name("async-consumer"))
TICKS = os.sysconf("SC_CLK_TCK")


# -- PgBouncer of our own, and what it and PostgreSQL report -----------------------------------


@dataclass
class Bouncer:
    """A PgBouncer of the benchmark's own, in the foreground of a child process."""

    server: str
    pool: int
    max_clients: int
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        parts = urlsplit(self.server)
        return parts._replace(
            netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}"
        ).geturl()

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        server = urlsplit(self.server)
        user = server.username or "postgres"
        (self.directory / "userlist.txt").write_text(f'"{user}" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            textwrap.dedent(f"""\
            [databases]
            * = host={server.hostname or "127.0.0.1"} port={server.port or 5432}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {self.port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {self.directory / "userlist.txt"}
            admin_users = {user}
            pool_mode = transaction
            default_pool_size = {self.pool}
            max_client_conn = {self.max_clients}
            """)
        )
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
        if binary is None:
            sys.exit("error: pgbouncer is not installed (apt-get install pgbouncer)")
        as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
        log = (self.directory / "pgbouncer.log").open("ab")
        self.process = subprocess.Popen([binary, *as_user, str(config)], stdout=log, stderr=log)
        log.close()
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit(
            f"error: PgBouncer did not start: {(self.directory / 'pgbouncer.log').read_text()}"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def admin(self, command: str) -> list[list[str]]:
        """Rows of an admin console command (it takes simple queries only: psql)."""
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pgbouncer",
             "-AtF", "\t", "-c", command],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return [line.split("\t") for line in done.stdout.splitlines()]

    def server_pids(self) -> list[int]:
        """The PostgreSQL backends serving this PgBouncer (``SHOW SERVERS``' remote_pid)."""
        rows = self.admin("SHOW SERVERS")
        return [int(row[15]) for row in rows if len(row) > 15 and row[15].isdigit()]

    def stats(self, database: str) -> dict[str, str]:
        """``SHOW STATS`` for one database, by column."""
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pgbouncer",
             "-AF", "\t", "-c", "SHOW STATS"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        lines = [line.split("\t") for line in done.stdout.splitlines()]
        header = lines[0]
        for row in lines[1:]:
            if row and row[0] == database:
                return dict(zip(header, row, strict=False))
        return {}


@contextmanager
def running_bouncer(server: str, pool: int, max_clients: int) -> Iterator[Bouncer]:
    directory = Path(tempfile.mkdtemp(prefix="fleet-pgbouncer-"))
    directory.chmod(0o755)
    bouncer = Bouncer(server, pool, max_clients, directory)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuMeter:
    """CPU seconds of a changing set of processes (PgBouncer's backends come and go)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            seconds = cpu_seconds(pid)
            self.first.setdefault(pid, seconds)
            if seconds:
                self.last[pid] = seconds

    def used(self) -> float:
        return sum(self.last.get(pid, start) - start for pid, start in self.first.items())


async def sql(url: str, query: str, *args: object) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- real workers ------------------------------------------------------------------------------


def real(args: argparse.Namespace) -> None:
    """Run the fleet of real workers once and print its figures."""
    server = args.postgres
    run = uuid.uuid4().hex[:10]
    schema = f"fleet_{run}"
    tmp = Path(tempfile.mkdtemp(prefix="fleet-"))
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"{args.workers} workers x -j {args.jobs}, {args.trials} trials of sleep {args.seconds}, "
          f"--heartbeat {args.heartbeat}, PgBouncer pool {args.pool}")  # fmt: skip
    try:
        with running_bouncer(server, args.pool, args.workers * 2 + 100) as bouncer:
            url = f"{bouncer.url}?schema={schema}"
            anyio.run(_add, f"{server}?schema={schema}", args.trials)
            figures = anyio.run(_run_fleet, args, bouncer, url, schema, tmp)
    finally:
        anyio.run(sql, server, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)
    for name, value in figures.items():
        print(f"{name:<40} {value}")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


async def _add(url: str, count: int) -> None:
    async with store_from_url(url) as store:
        await store.add(Trial(id=f"t{i:05d}", params={"i": i}) for i in range(count))


@dataclass
class Probe:
    """A worker's timer calls, made beside the fleet through the same PgBouncer, timed."""

    url: str
    times: list[float] = field(default_factory=list)

    async def run(self, stop: anyio.Event) -> None:
        store = await PostgresStore.open(self.url, max_connections=1)
        me = WorkerInfo(name="probe", host="probehost", pid=os.getpid())
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.record_worker(me),
            lambda: store.held_leases("probehost/"),
            lambda: store.reclaim_stale(3600.0),  # none is an hour old: it reclaims nothing
        ]
        try:
            while not stop.is_set():
                for call in calls:
                    start = time.perf_counter()
                    await call()
                    self.times.append(time.perf_counter() - start)
                await anyio.sleep(0.2)
        finally:
            await store.aclose()


async def _run_fleet(
    args: argparse.Namespace, bouncer: Bouncer, url: str, schema: str, tmp: Path
) -> dict[str, object]:
    server, application = args.postgres, schema
    log = tmp / "starts.log"
    trial = (f'echo "$ASYNC_CONSUMER_TRIAL_ID $ASYNC_CONSUMER_ATTEMPT $(date +%s.%N)" >>{log}; '
             f'sleep {args.seconds}; echo 1 >"$ORION_RESULTS_PATH"')  # fmt: skip
    argv = [COMMAND, "-v", "worker", "--store", f"{url}&application_name={application}",
            "-j", str(args.jobs), "--heartbeat", str(args.heartbeat), "--code-change", "ignore",
            "--base-dir", str(tmp / "trials"), "--", "sh", "-c", trial]  # fmt: skip
    most_servers, samples = 0, 0
    stop = anyio.Event()
    probe = Probe(url)
    before = bouncer.stats("test")
    began = time.monotonic()
    fleet = [
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=(tmp / f"w{i}.err").open("w"))  # noqa: ASYNC220 - started at once, before the loop has anything to do
        for i in range(args.workers)
    ]
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe.run, stop)
        while any(worker.poll() is None for worker in fleet):
            rows = await sql(server, query, application)
            most_servers = max(most_servers, rows[0][0])
            samples += 1
            await anyio.sleep(0.5)
        stop.set()
    drain = time.monotonic() - began
    after = bouncer.stats("test")
    errors = [(tmp / f"w{i}.err").read_text() for i in range(args.workers)]
    trials = await _stored(f"{server}?schema={schema}")
    return _real_figures(args, fleet, errors, trials, log, drain, most_servers, samples, probe,
                         before, after)  # fmt: skip


async def _stored(url: str) -> list[Any]:
    async with store_from_url(url) as store:
        return await store.list()


def _real_figures(
    args: argparse.Namespace,
    fleet: list[subprocess.Popen[bytes]],
    errors: list[str],
    trials: list[Any],
    log: Path,
    drain: float,
    most_servers: int,
    samples: int,
    probe: Probe,
    before: dict[str, str],
    after: dict[str, str],
) -> dict[str, object]:
    starts = Counter(line.split()[0] for line in log.read_text().splitlines() if line.strip())
    times = sorted(float(line.split()[2]) for line in log.read_text().splitlines() if line.strip())
    completed = [t for t in trials if t.status.value == "completed"]
    reclaimed = sum(
        1 for t in trials for a in t.attempts
        if a.outcome is not None and a.outcome.reason is not None
        and a.outcome.reason.value in ("lease_lost", "lost")
    )  # fmt: skip
    writes = [
        int(m.group(1)) for e in errors for m in [re.search(r"(\d+) heartbeat writes", e)] if m
    ]
    floor = args.trials * args.seconds / (args.workers * args.jobs)
    busy_ticks = args.trials * args.seconds / (args.jobs * args.heartbeat)
    xacts = int(after.get("total_xact_count", 0)) - int(before.get("total_xact_count", 0))
    xact_us = int(after.get("total_xact_time", 0)) - int(before.get("total_xact_time", 0))
    wait_us = int(after.get("total_wait_time", 0)) - int(before.get("total_wait_time", 0))
    span = times[-1] - times[0] + args.seconds if times else float("nan")
    return {
        "workers exited 0": f"{sum(w.returncode == 0 for w in fleet)} / {len(fleet)}",
        "worker tracebacks": sum("Traceback" in e for e in errors),
        "trials completed": f"{len(completed)} / {args.trials}",
        "lost (not completed)": args.trials - len(completed),
        "run more than once": sum(1 for n in starts.values() if n > 1),
        "healthy trials reclaimed": f"{reclaimed} attempts ended lease_lost or lost; "
        f"{sum(e.count('reclaimed') for e in errors)} reclaims logged by workers",
        "most server connections (pg_stat_activity)": f"{most_servers} ({samples} samples)",
        "heartbeat writes / s": f"{sum(writes) / span:.1f} over the trials' {span:.0f} s "
        f"(workers / interval = {args.workers / args.heartbeat:.1f}; {len(writes)} workers told)",
        # a worker writes once a tick while it holds a lease: the work's share of the span
        "heartbeat writes / busy worker-interval": f"{sum(writes) / busy_ticks:.2f} "
        f"({sum(writes)} writes; trials x seconds / (jobs x interval) = {busy_ticks:.0f})",
        "probe store calls p50 / p99 (ms)": f"{_ms(probe.times, 0.5):.1f} / {_ms(probe.times, 0.99):.1f} ({len(probe.times)} calls)",
        "PgBouncer avg transaction / wait (ms)": f"{xact_us / max(xacts, 1) / 1000:.2f} / {wait_us / max(xacts, 1) / 1000:.2f} over {xacts} transactions",
        "drain (first start to last exit)": f"{drain:.1f} s; floor {floor:.0f} s; ratio {drain / floor:.2f}",
        "trials' span (first start to last end)": f"{span:.1f} s; ratio to floor {span / floor:.2f}",
    }


# -- simulated workers -------------------------------------------------------------------------

SIM_CALLS = ("reserve", "heartbeat_many", "finish", "record_worker", "held_leases", "reclaim_stale")


def _outcome(lease: Lease) -> Outcome:
    now = datetime.now(UTC)
    return Outcome(
        trial_id=lease.trial_id,
        attempt=lease.trial.attempt,
        status=Status.COMPLETED,
        results=(Result(name="loss", type="objective", value=0.25),),
        argv=("python", "train.py"),
        started_at=now,
        ended_at=now,
    )


@dataclass
class Tally:
    """What the simulated workers did, while the window was open."""

    times: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in SIM_CALLS})
    finished: int = 0
    beats: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    open: bool = False


class SimWorker:
    """One simulated worker: a pool of one connection, a worker's calls at a worker's rates."""

    def __init__(self, n: int, pool: Any, schema: str, tally: Tally, args: argparse.Namespace):
        self.store = PostgresStore(pool, schema=schema, owns_pool=True)
        self.tally, self.args = tally, args
        self.info = WorkerInfo(name=f"sim{n}", host=f"simhost{n}", pid=n)
        self.holder = f"simhost{n}/{n}/1"

    async def timed(self, call: str, op: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            result = await op(*args)
        except Exception as exc:  # noqa: BLE001 - counted and shown in the row
            self.tally.errors[f"{call}: {type(exc).__name__}"] += 1
            return None
        if self.tally.open:
            self.tally.times[call].append(time.perf_counter() - start)
        return result

    async def run(self, until: float) -> None:
        args, store = self.args, self.store
        await anyio.sleep(random.uniform(0, args.heartbeat))  # a fleet's starts are spread
        name, host, holder = self.info.name, self.info.host, self.holder
        await self.timed("record_worker", lambda: store.record_worker(self.info, starting=True))
        lease = await self.timed(
            "reserve", lambda: store.reserve(name, Reservation(host=host, holder=holder))
        )
        ends = anyio.current_time() + args.trial
        tick = anyio.current_time() + args.heartbeat
        while anyio.current_time() < until:
            await anyio.sleep(max(0.0, min(ends, tick) - anyio.current_time()))
            now = anyio.current_time()
            if lease is not None and now >= ends:
                done = lease
                if (
                    await self.timed("finish", store.finish, done, _outcome(done))
                    and self.tally.open
                ):
                    self.tally.finished += 1
                lease = await self.timed(
                    "reserve", lambda: store.reserve(name, Reservation(host=host, holder=holder))
                )
                ends = now + args.trial
            if now >= tick:
                tick = now + args.heartbeat
                if lease is not None:
                    held = [lease]
                    await self.timed("heartbeat_many", store.heartbeat_many, held)
                    self.tally.beats += self.tally.open
                await self.timed("record_worker", lambda: store.record_worker(self.info))
                await self.timed("held_leases", lambda: store.held_leases(f"{host}/"))
                await self.timed(
                    "reclaim_stale", lambda: store.reclaim_stale(3 * args.heartbeat, spare=holder)
                )


def simulate(args: argparse.Namespace) -> None:
    """One row for each N."""
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"simulated workers: {args.duration:g} s each, trials of {args.trial:g} s, heartbeat "
          f"{args.heartbeat:g} s, PgBouncer pool {args.pool}; ms")  # fmt: skip
    header = "".join(f" {c[:14]:>14} p50/p99" for c in SIM_CALLS)
    print(
        f"{'N':>5} {'trials/s':>8} {'beats/s':>8}{header} {'pg cpu':>7} {'bouncer':>7} {'gen':>5} {'load':>5} errors"
    )
    with running_bouncer(args.postgres, args.pool, max(args.n) + 200) as bouncer:
        for n in args.n:
            row = anyio.run(_simulate_row, args, bouncer, n)
            print(row, flush=True)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


async def _simulate_row(args: argparse.Namespace, bouncer: Bouncer, n: int) -> str:
    schema = f"sim_{uuid.uuid4().hex[:10]}"
    direct = f"{args.postgres}?schema={schema}"
    await _add(direct, n * (int(args.duration / args.trial) + 3))
    tally = Tally()
    url = bouncer.url
    pools = []
    async with anyio.create_task_group() as tg:  # connect in parallel, a hundred at a time
        limit = anyio.Semaphore(100)

        async def connect() -> None:
            async with limit:
                pools.append(await connect_pool(url, 1))

        for _ in range(n):
            tg.start_soon(connect)
    workers = [SimWorker(i, pool, schema, tally, args) for i, pool in enumerate(pools)]
    warmup = args.heartbeat
    until = anyio.current_time() + warmup + args.duration
    postgres, pgbouncer, me = CpuMeter(), CpuMeter(), CpuMeter()
    loads: list[float] = []
    assert bouncer.process is not None
    bouncer_pid = bouncer.process.pid

    async def window() -> None:
        assert bouncer.process is not None
        await anyio.sleep(warmup)  # every worker has started: the window opens
        tally.open = True
        me.sample([os.getpid()])
        pgbouncer.sample([bouncer_pid])
        loads.append(os.getloadavg()[0])
        end = anyio.current_time() + args.duration
        while anyio.current_time() < end:
            postgres.sample(await anyio.to_thread.run_sync(bouncer.server_pids))
            await anyio.sleep(1.0)
        tally.open = False
        me.sample([os.getpid()])
        pgbouncer.sample([bouncer_pid])
        loads.append(os.getloadavg()[0])

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(window)
            for worker in workers:
                tg.start_soon(worker.run, until)
    finally:
        for worker in workers:
            await worker.store.aclose()
        await sql(args.postgres, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    seconds = args.duration
    cells = "".join(
        f" {_ms(tally.times[c], 0.5):>14.1f}/{_ms(tally.times[c], 0.99):<6.1f}" for c in SIM_CALLS
    )

    def cpu(meter: CpuMeter) -> str:
        return f"{100 * meter.used() / seconds:>6.0f}%"

    errors = ", ".join(f"{k} x{v}" for k, v in tally.errors.items()) or "none"
    return (f"{n:>5} {tally.finished / seconds:>8.1f} {tally.beats / seconds:>8.1f}{cells}"
            f" {cpu(postgres)} {cpu(pgbouncer)} {cpu(me)[1:]:>5} {sum(loads) / 2:>5.1f} {errors}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--postgres", default=os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL"))
    parser.add_argument("--pool", type=int, default=20, help="PgBouncer's server connections")
    sub = parser.add_subparsers(dest="part", required=True)
    one = sub.add_parser("real", help="real worker processes")
    one.add_argument("--workers", type=int, default=100)
    one.add_argument("--jobs", type=int, default=4)
    one.add_argument("--trials", type=int, default=2000)
    one.add_argument("--seconds", type=float, default=20.0)
    one.add_argument("--heartbeat", type=float, default=10.0)
    many = sub.add_parser("simulate", help="workers simulated as tasks")
    many.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    many.add_argument("--duration", type=float, default=45.0, help="seconds measured a row")
    many.add_argument("--trial", type=float, default=30.0)
    many.add_argument("--heartbeat", type=float, default=10.0)
    args = parser.parse_args()
    if not args.postgres:
        parser.error("pass --postgres URL or set ASYNC_CONSUMER_TEST_POSTGRES_URL")
    (real if args.part == "real" else simulate)(args)


if __name__ == "__main__":
    main()
