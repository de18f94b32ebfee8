"""
Results that outlive an outage (issue 25): the cases of its table no other benchmark measures.

Rows (``--rows``, comma-separated; all by default):

- ``outage10``, ``outage60``, ``outage95``: 4 ``worker`` processes of 4 lanes with the default
  30 s heartbeat on PostgreSQL (``ASYNC_CONSUMER_TEST_POSTGRES_URL``, a fresh schema) reached
  through the fault tests' TCP proxy (``tests/faults/proxy_main.py``); 16 trials start, the
  proxy is cut (connections dropped, new ones refused), all 16 finish, and the proxy is restored
  after 10, 60 or 95 s.
- ``pgstop``: the same with PostgreSQL itself stopped for 12 s (``pg_ctl stop -m fast``, then
  ``start``): a private server the script makes with ``initdb`` in a temporary directory (as the
  ``postgres`` user when run as root) on a free port, never the shared one.
- ``chaos``: 4 workers of 4 lanes, heartbeat 1 s, 150 checkpointing trials of 3-10 s on
  PostgreSQL; a worker is SIGKILLed (and restarted) or SIGSTOPped for 4 s every 0.5-1.5 s
  until every trial has ended; ``--chaos-runs`` runs (3), medians. Each overlap and each
  broken trial is described (what the chaos last did to the old run's worker, how each attempt
  ended).
- ``disk``: a ``worker -j 6`` (SQLite) whose trial directories are on a tmpfs left with 768 KiB
  free: 3 healthy trials that wait for the script's go, 12 that write 1 MiB (and fail with
  ENOSPC); the worker gives up after its file faults, the healthy trials are let go, space is
  freed and a second worker runs the rest. ``disk0``: the same with nothing free, so no
  trial's files can be made until space returns.

Targets: 0 results thrown away (a finished run not accepted and its trial run again), 0 losses
charged, no record saying "reply was lost", re-runs and records within 4 heartbeats of the
store's return; 0 healthy trials broken, accepted twice, overlapping their re-run, or left
running; every full-disk failure ``interrupted/disk_full``, no running healthy trial cancelled,
attempt numbers dense.

    python benchmarks/outage.py [--rows outage10,outage60,outage95,pgstop,chaos,disk,disk0]
        [--chaos-runs 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from async_consumer import Status, StoredTrial, Trial, TrialStatus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.faults.sync_store import add_trials, stored_trials

PROXY = ROOT / "tests" / "faults" / "proxy_main.py"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
HEARTBEAT = 30.0  # the worker's default
WORKERS, LANES = 4, 4
ROWS = ("outage10", "outage60", "outage95", "pgstop", "chaos", "disk", "disk0")

# each run logs "trial attempt pid start time", waits for the go file, writes its result
WAITING = """
import json, os, pathlib, sys, time
with open(sys.argv[1], 'a') as runs:
    runs.write(f"{os.environ['ASYNC_CONSUMER_TRIAL_ID']} {os.environ['ASYNC_CONSUMER_ATTEMPT']} "
               f"{os.getpid()} start {time.time()}\\n")
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""

# a checkpointing trial of 30-100 steps of 0.1 s (3-10 s), its step kept in ckpt.json;
# each run logs "trial attempt pid start|step|end time"
CHECKPOINTING = """
import json, os, pathlib, sys, time
trial, attempt = os.environ['ASYNC_CONSUMER_TRIAL_ID'], os.environ['ASYNC_CONSUMER_ATTEMPT']
def log(what):
    with open(sys.argv[1], 'a') as runs:
        runs.write(f"{trial} {attempt} {os.getpid()} {what} {time.time()}\\n")
log('start')
here = pathlib.Path(os.environ['ORION_WORKING_DIR'])
ckpt = here / 'ckpt.json'
step = json.loads(ckpt.read_text())['step'] if ckpt.exists() else 0
steps = 30 + (int(trial[1:]) * 37) % 71
while step < steps:
    time.sleep(0.1)
    step += 1
    tmp = here / f'ckpt.{os.getpid()}.tmp'
    tmp.write_text(json.dumps({'step': step}))
    tmp.rename(ckpt)
    log('step')
json.dump(float(steps), open(os.environ['ORION_RESULTS_PATH'], 'w'))
log('end')
"""

# "long*" waits for the go file; the others write 1 MiB into their working directory
FILLING = """
import json, os, pathlib, sys
marks = pathlib.Path(sys.argv[1])
trial = os.environ['ASYNC_CONSUMER_TRIAL_ID']
if trial.startswith('long'):
    (marks / f'{trial}-started').touch()
    while not (marks / 'go').exists():
        pass
else:
    path = os.path.join(os.environ['ORION_WORKING_DIR'], 'data.bin')
    try:
        with open(path, 'wb') as data:
            data.write(b'x' * (1 << 20))
    except OSError:
        os.remove(path)
        raise
json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""

Run = tuple[str, int, int, str, float]  # trial, attempt, pid, what, time.time()


# -- the store, from synchronous code -------------------------------------------------------


def drop_schema(base: str, schema: str) -> None:
    """Drop a PostgreSQL schema and all in it."""

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    anyio.run(drop)


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """The URL of a fresh schema on the server at ``base``, dropped after."""
    schema = f"outage_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{base}?schema={schema}"
    finally:
        with contextlib.suppress(Exception):
            drop_schema(base, schema)


# -- the faults ------------------------------------------------------------------------------


class Proxy:
    """The fault tests' TCP proxy process in front of ``host:port``: cut and restored."""

    def __init__(self, host: str, port: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(PROXY), host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def tell(self, command: str) -> None:
        """``cut`` (drop every connection, refuse new ones) or ``restore``."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        assert self._process.stdout.readline().strip() == "ok"

    def close(self) -> None:
        """End the proxy process."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)


class PrivateServer:
    """A PostgreSQL server of the script's own in a temporary directory, stopped and started."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pgdata"
        self.port = _free_port()
        root.mkdir()
        root.parent.chmod(0o755)  # the server's user passes through the temporary directory
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(root, "postgres")
        self._pg(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        options = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._options = options
        self.start()
        self.base = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, argv: list[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log = str(self.data.parent / "server.log")
        self._pg(["pg_ctl", "-D", str(self.data), "-o", self._options, "-l", log, "-w", "start"])

    def stop(self) -> None:
        """Stop it as an operator would (``-m fast``: sessions ended, then shut down)."""
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def close(self) -> None:
        """Stop it for good (if it runs)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- workers and what their trials log --------------------------------------------------------


def worker_argv(url: str, lanes: int, base_dir: Path, options: Sequence[str]) -> list[str]:
    """The ``worker`` command of this package on ``url`` (options before ``--``)."""
    argv = [sys.executable, "-m", "async_consumer._cli", "worker", "--store", url]
    argv += ["-j", str(lanes), "--base-dir", str(base_dir), "--code-change", "ignore"]
    return [*argv, *options, "--"]


class Workers:
    """Worker processes, each with its stderr in a file of its own."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(exist_ok=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.exits: list[int] = []

    def start(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start one more."""
        with (self.logs / f"{len(self.processes) + len(self.exits)}.err").open("wb") as err:
            process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        self.processes.append(process)
        return process

    def reap(self) -> list[subprocess.Popen[bytes]]:
        """Forget the workers that exited (their codes kept); return them."""
        ended = [p for p in self.processes if p.poll() is not None]
        for process in ended:
            self.processes.remove(process)
            self.exits.append(process.returncode)
        return ended

    def wait(self, bound: float) -> None:
        """Wait for every worker to exit, killing those still there after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while self.processes and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()
            self.exits.append(process.returncode)
        self.processes.clear()

    def stderr(self) -> str:
        """Everything the workers wrote to stderr."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.err")))


def read_runs(path: Path) -> list[Run]:
    """What the trials' runs logged."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [
        (t, int(a), int(p), w, float(at)) for t, a, p, w, at in (r for r in rows if len(r) == 5)
    ]


def overlaps(ran: Sequence[Run]) -> list[str]:
    """The trials one of whose runs still worked (a step, its end) after a later run began."""
    starts = {(t, pid): at for t, _, pid, what, at in ran if what == "start"}
    late = set()
    for trial, _, pid, what, at in ran:
        if what == "start":
            continue
        began = starts[trial, pid]
        if any(o == trial and p != pid and began < s < at for (o, p), s in starts.items()):
            late.add(trial)
    return sorted(late)


def wait_for(
    condition: Callable[[], bool],
    what: str,
    bound: float = 180.0,
    workers: Workers | None = None,
) -> None:
    """
    Poll ``condition`` until it holds; raise naming ``what`` after ``bound`` seconds, or when
    every one of ``workers`` has exited.
    """
    deadline = time.monotonic() + bound
    while not condition():
        gone = workers is not None and all(p.poll() is not None for p in workers.processes)
        if gone or time.monotonic() > deadline:
            msg = f"waited {bound:g} s for {what}"
            raise TimeoutError(msg)
        time.sleep(0.02)


def load() -> str:
    """The load averages (1, 5 min) now."""
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def charged(stored: Sequence[StoredTrial]) -> dict[str, int]:
    """Losses charged to trials, lost attempts, and records saying a reply was lost."""
    outcomes = [a.outcome for t in stored for a in t.attempts if a.outcome]
    return {
        "losses_charged": sum(t.lost_count for t in stored),
        "lost_attempts": sum(o.status is Status.LOST for o in outcomes),
        "reply_lost_records": sum("reply was lost" in o.message for o in outcomes),
    }


def outcome_counts(stored: Sequence[StoredTrial]) -> dict[str, int]:
    """How the trials' attempts ended (status/reason), and how many have not."""
    counts = Counter(
        f"{a.outcome.status}/{a.outcome.reason or '-'}" if a.outcome else "none"
        for t in stored
        for a in t.attempts
    )
    return dict(sorted(counts.items()))


# -- the outage rows ---------------------------------------------------------------------------


@dataclass
class Cut:
    """How the store is made unreachable, and made reachable again."""

    cut: Callable[[], None]
    restore: Callable[[], None]


def outage_row(name: str, seconds: float, tmp: Path) -> dict[str, Any]:
    """One outage row (see the module's docstring)."""
    base = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL", DEFAULT_URL)
    if name == "pgstop":
        server = PrivateServer(tmp / "server")
        try:
            with fresh_schema(server.base) as url:
                return _outage(name, seconds, tmp, url, url, Cut(server.stop, server.start))
        finally:
            server.close()
    parts = urlsplit(base)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        with fresh_schema(base) as direct:
            netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
            proxied = parts._replace(netloc=netloc).geturl() + "?" + direct.split("?", 1)[1]
            cut = Cut(lambda: proxy.tell("cut"), lambda: proxy.tell("restore"))
            return _outage(name, seconds, tmp, direct, proxied, cut)
    finally:
        proxy.close()


def _outage(
    name: str, seconds: float, tmp: Path, direct: str, url: str, fault: Cut
) -> dict[str, Any]:
    trials = WORKERS * LANES
    ids = [f"t{i:02d}" for i in range(trials)]
    add_trials(direct, (Trial(id=i) for i in ids))
    script, runs, go = tmp / "trial.py", tmp / "runs.txt", tmp / "go"
    script.write_text(WAITING)
    argv = worker_argv(url, LANES, tmp / "trials", ["--grace", "0.5"])
    argv += [sys.executable, str(script), str(runs), str(go)]
    workers = Workers(tmp / "logs")
    load_before = load()
    for _ in range(WORKERS):
        workers.start(argv)
    try:
        wait_for(
            lambda: len({r[0] for r in read_runs(runs)}) >= trials,
            "every trial to start",
            workers=workers,
        )
        cut_at = time.monotonic()
        fault.cut()
        go.touch()
        exits = tmp / "trials"
        wait_for(lambda: len(list(exits.glob("*/*/attempts/*/exit.json"))) >= trials, "exits")
        finished_in = time.monotonic() - cut_at
        time.sleep(max(0.0, cut_at + seconds - time.monotonic()))
        fault.restore()
        back_at, back_wall = time.monotonic(), time.time()
        outage = back_at - cut_at
        recorded: dict[str, float] = {}
        while workers.processes and len(recorded) < trials:
            workers.reap()
            with contextlib.suppress(Exception):
                for trial in stored_trials(direct):
                    if trial.status is TrialStatus.COMPLETED and trial.id not in recorded:
                        recorded[trial.id] = time.monotonic() - back_at
            time.sleep(0.25)
        workers.wait(bound=HEARTBEAT * 10)
    finally:
        workers.wait(bound=0)
    stored = stored_trials(direct)
    ran = read_runs(runs)
    per_trial = Counter(r[0] for r in ran)
    reruns = [r[4] - back_wall for r in ran if r[1] > 1]  # a run of a later attempt
    err = workers.stderr()
    completed = [t for t in stored if t.status is TrialStatus.COMPLETED]
    return {
        "row": name,
        "outage_s": round(outage, 1),
        "finished_in_outage_s": round(finished_in, 1),
        "trials": trials,
        "completed": len(completed),
        "thrown_away": sum(n > 1 for n in per_trial.values()),
        "runs": len(ran),
        "from_files": sum(
            "completed from attempt" in (t.attempts[-1].outcome.message or "")
            for t in completed
            if t.attempts[-1].outcome
        ),
        **charged(stored),
        "rejected": err.count("result not recorded"),
        "reclaimed": err.count("reclaimed"),
        "tracebacks": err.count("Traceback"),
        "worker_exits": sorted(workers.exits),
        "last_record_s": round(max(recorded.values(), default=float("nan")), 1),
        "last_rerun_start_s": round(max(reruns), 1) if reruns else None,
        "last_record_heartbeats": round(max(recorded.values(), default=0.0) / HEARTBEAT, 2),
        "outcomes": outcome_counts(stored),
        "load": f"{load_before} -> {load()}",
    }


# -- chaos -----------------------------------------------------------------------------------


CHAOS_TRIALS = 150
FREEZE = 4.0  # seconds a frozen worker stays frozen: past its lease (3 heartbeats of 1 s)


def chaos_run(seed: int, tmp: Path) -> dict[str, Any]:
    """One chaos run (see the module's docstring)."""
    base = os.environ.get("ASYNC_CONSUMER_TEST_POSTGRES_URL", DEFAULT_URL)
    with fresh_schema(base) as url:
        return _chaos(seed, tmp, url)


def _chaos(seed: int, tmp: Path, url: str) -> dict[str, Any]:
    add_trials(url, (Trial(id=f"t{i:03d}") for i in range(CHAOS_TRIALS)))
    runs = tmp / "runs.txt"
    argv = worker_argv(url, LANES, tmp / "trials", ["--heartbeat", "1", "--grace", "0.5"])
    script = tmp / "trial.py"  # a file: the command's braces would be placeholders
    script.write_text(CHECKPOINTING)
    argv += [sys.executable, str(script), str(runs)]
    workers = Workers(tmp / "logs")
    chance = random.Random(seed)
    kills = freezes = 0
    events: list[tuple[float, str, int]] = []  # time.time(), kill or freeze, the worker's pid
    load_before = load()
    began = time.monotonic()
    for _ in range(WORKERS):
        workers.start(argv)

    def restart_killed() -> None:
        for ended in workers.reap():
            if ended.returncode == -signal.SIGKILL:  # restarted, as systemd or Slurm would
                workers.start(argv)

    while len({r[0] for r in read_runs(runs) if r[3] == "end"}) < CHAOS_TRIALS:
        if time.monotonic() - began > 900:
            break
        time.sleep(chance.uniform(0.5, 1.5))
        restart_killed()
        if not workers.processes:
            break
        victim = chance.choice(workers.processes)
        if chance.random() < 0.5:
            victim.send_signal(signal.SIGKILL)
            events.append((time.time(), "kill", victim.pid))
            kills += 1
        else:
            victim.send_signal(signal.SIGSTOP)
            events.append((time.time(), "freeze", victim.pid))
            time.sleep(FREEZE)
            victim.send_signal(signal.SIGCONT)
            freezes += 1
    deadline = time.monotonic() + 180
    while workers.processes and time.monotonic() < deadline:
        restart_killed()
        time.sleep(0.05)
    workers.wait(bound=0)
    seconds = time.monotonic() - began
    ran = read_runs(runs)
    marker = str(runs)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not _running(marker), "the trials to end", bound=30)
    stored = stored_trials(url)
    accepted = Counter(
        t.id for t in stored for a in t.attempts if a.outcome and a.outcome.is_completed
    )
    err = workers.stderr()
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "kills": kills,
        "freezes": freezes,
        "completed": sum(t.status is TrialStatus.COMPLETED for t in stored),
        "broken": sum(t.status is TrialStatus.BROKEN for t in stored),
        "accepted_twice": sum(n > 1 for n in accepted.values()),
        "overlaps": len(overlaps(ran)),
        "overlap_detail": overlap_detail(ran, stored, events),
        "broken_detail": [_attempts(t) for t in stored if t.status is TrialStatus.BROKEN],
        "orphans": len(_running(marker)),
        "trials_charged": sum(t.lost_count > 0 for t in stored),
        "trials_charged_twice": sum(t.lost_count > 1 for t in stored),
        **charged(stored),
        "lost_why": dict(
            Counter(
                re.sub(r"\d+", "N", a.outcome.message)
                for t in stored
                for a in t.attempts
                if a.outcome and a.outcome.status is Status.LOST
            )
        ),
        "tracebacks": err.count("Traceback"),
        "outcomes": outcome_counts(stored),
        "load": f"{load_before} -> {load()}",
    }


def overlap_detail(
    ran: Sequence[Run], stored: Sequence[StoredTrial], events: Sequence[tuple[float, str, int]]
) -> list[str]:
    """
    For each run that went on after its trial's re-run began: how long it went on, what the
    chaos last did to its worker before the re-run began, and how its attempt was recorded.
    """
    attempts = {(t.id, a.number): a for t in stored for a in t.attempts}
    starts = {(t, pid): (a, at) for t, a, pid, what, at in ran if what == "start"}
    last = {(t, pid): at for t, _, pid, _, at in ran}
    found = []
    for (trial, pid), (number, began) in starts.items():
        later = [s for (o, p), (_, s) in starts.items() if o == trial and p != pid and s > began]
        if not later or last[trial, pid] <= min(later):
            continue
        rerun = min(later)
        attempt = attempts.get((trial, number))
        worker = int(attempt.worker.rsplit(":", 1)[-1]) if attempt else -1
        done = [(at, kind) for at, kind, victim in events if victim == worker and at < rerun]
        what = f"{done[-1][1]} {rerun - done[-1][0]:.1f} s before" if done else "no event"
        outcome = attempt.outcome if attempt else None
        recorded = f"{outcome.status}: {outcome.message[:50]}" if outcome else "-"
        found.append(
            f"{trial} attempt {number} ran {last[trial, pid] - rerun:.2f} s into the re-run;"
            f" its worker {worker}: {what}; recorded {recorded}"
        )
    return found


def _attempts(trial: StoredTrial) -> list[str]:
    """How each attempt of the trial ended, and on which worker."""
    return [
        f"{a.number} {a.worker} {a.outcome.status}: {a.outcome.message[:70]}"
        for a in trial.attempts
        if a.outcome
    ]


def _running(marker: str) -> list[int]:
    """The pids of processes whose command line holds ``marker`` (this run's trials)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


# -- a full disk -----------------------------------------------------------------------------


FREE = 768 * 1024  # room for trials' files, not for a trial's 1 MiB of data
HEALTHY, FILLING_TRIALS = 3, 12


@contextlib.contextmanager
def full_tmpfs(mount: Path, size: str, free: int) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount``, filled by ``filler`` until ``free`` bytes are left."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - free))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def disk_row(tmp: Path, free: int) -> dict[str, Any]:
    """
    A full-disk row (see the module's docstring) with ``free`` bytes left; with none, no
    trial's files can be made, so none runs until space returns.
    """
    url = f"sqlite:///{tmp}/store.db"
    healthy = [f"long{i}" for i in range(HEALTHY)]
    ids = [*healthy, *(f"big{i:02d}" for i in range(FILLING_TRIALS))]
    add_trials(url, (Trial(id=i) for i in ids))
    marks = tmp / "marks"
    marks.mkdir()
    load_before = load()
    with full_tmpfs(tmp / "disk", "32m", free) as disk:
        argv = worker_argv(url, HEALTHY + 3, disk / "trials", ["--heartbeat", "1", "--grace", "1"])
        script = tmp / "trial.py"
        script.write_text(FILLING)
        argv += [sys.executable, str(script), str(marks)]
        workers = Workers(tmp / "logs")
        first = workers.start(argv)

        def faults() -> int:
            return sum(
                a.outcome.reason == "disk_full"
                for t in stored_trials(url)
                for a in t.attempts
                if a.outcome
            )

        if free:
            wait_for(
                lambda: all((marks / f"{t}-started").exists() for t in healthy),
                "long trials",
                workers=workers,
            )
        wait_for(lambda: faults() >= 5 or first.poll() is not None, "the worker to give up")
        time.sleep(2.0)  # time for the worker to act on giving up
        still_running = [
            t.id
            for t in stored_trials(url)
            if t.id in healthy and t.attempts and t.attempts[-1].outcome is None
        ]
        alive_after_giving_up = first.poll() is None
        (marks / "go").touch()
        workers.wait(bound=120)
        first_exit = workers.exits[-1]
        after_first = stored_trials(url)
        (disk / "filler").unlink()  # space returns
        workers.start(argv)
        workers.wait(bound=300)
        stored = stored_trials(url)
    full = [
        a.outcome
        for t in stored
        for a in t.attempts
        if a.outcome and a.outcome.reason == "disk_full"
    ]
    by_id = {t.id: t for t in after_first}
    return {
        "row": "disk" if free else "disk0",
        "disk_full_outcomes": len(full),
        "charged_to_worker": sum(o.status is Status.INTERRUPTED for o in full),
        "broken": sum(
            a.outcome.status is Status.BROKEN for t in stored for a in t.attempts if a.outcome
        ),
        "trials_charged": sum(t.lost_count > 0 for t in stored),
        "healthy_running_when_it_gave_up": len(still_running),
        "worker_alive_after_giving_up": alive_after_giving_up,
        "healthy_cancelled": sum(_ended_unfinished(by_id[t]) for t in healthy),
        "attempts_dense": all(
            [a.number for a in t.attempts] == list(range(1, len(t.attempts) + 1)) for t in stored
        ),
        "attempts_never_started": sum(
            a.outcome is not None and a.outcome.pid is None for t in stored for a in t.attempts
        ),
        "most_attempts": max(len(t.attempts) for t in stored),
        "completed_in_the_end": sum(t.status is TrialStatus.COMPLETED for t in stored),
        "trials": len(stored),
        "worker_exits": [first_exit, workers.exits[-1]],
        "file_faults_logged": workers.stderr().count("cannot create trial files"),
        "tracebacks": workers.stderr().count("Traceback"),
        "outcomes": outcome_counts(stored),
        "load": f"{load_before} -> {load()}",
    }


def _ended_unfinished(trial: StoredTrial) -> bool:
    """Whether an attempt of the trial ended other than completed."""
    return any(a.outcome is not None and not a.outcome.is_completed for a in trial.attempts)


# -- the report ------------------------------------------------------------------------------


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as a Markdown table of ``columns``."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    print()


def misses(row: dict[str, Any]) -> list[str]:
    """Each figure of a row (or chaos run) that misses its target, named."""
    if "seed" in row:
        keys = ("broken", "accepted_twice", "overlaps", "orphans", "tracebacks")
        return [f"chaos seed {row['seed']}: {k} {row[k]}" for k in keys if row[k]]
    if row["row"].startswith("disk"):
        wrong = {
            "not charged to the worker": row["disk_full_outcomes"] - row["charged_to_worker"],
            "broken": row["broken"],
            "trials charged": row["trials_charged"],
            "healthy cancelled": row["healthy_cancelled"],
            "attempt numbers not dense": int(not row["attempts_dense"]),
            "tracebacks": row["tracebacks"],
        }
        return [f"{row['row']}: {k} {n}" for k, n in wrong.items() if n]
    keys = ("thrown_away", "losses_charged", "lost_attempts", "reply_lost_records", "tracebacks")
    missed = [f"{row['row']}: {k} {row[k]}" for k in keys if row[k]]
    late = max(row["last_record_s"], row["last_rerun_start_s"] or 0.0)
    if not late <= 4 * HEARTBEAT:
        missed.append(f"{row['row']}: recorded or re-run {late} s after the return")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"some of {', '.join(ROWS)}")
    parser.add_argument("--chaos-runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object a row")
    args = parser.parse_args()
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(wanted) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    outages: list[dict[str, Any]] = []
    chaos: list[dict[str, Any]] = []
    disk: list[dict[str, Any]] = []
    for row in wanted:
        runs = args.chaos_runs if row == "chaos" else 1
        for run in range(runs):
            with tempfile.TemporaryDirectory(prefix=f"outage-{row}-") as tmp:
                if row == "chaos":
                    figures = chaos_run(25 + run, Path(tmp))
                    chaos.append(figures)
                elif row in ("disk", "disk0"):
                    figures = disk_row(Path(tmp), FREE if row == "disk" else 0)
                    disk.append(figures)
                else:
                    seconds = 12.0 if row == "pgstop" else float(row.removeprefix("outage"))
                    figures = outage_row(row, seconds, Path(tmp))
                    outages.append(figures)
            print(json.dumps(figures) if args.json else f"{row}: {figures}", flush=True)
    print()
    if outages:
        table(outages, ["row", "outage_s", "trials", "completed", "thrown_away", "runs",
                        "from_files", "losses_charged", "lost_attempts", "reply_lost_records",
                        "rejected", "reclaimed", "last_record_s", "last_record_heartbeats",
                        "last_rerun_start_s",
                        "load"])  # fmt: skip
    if chaos:
        keys = ["seconds", "kills", "freezes", "completed", "broken", "accepted_twice",
                "overlaps", "orphans", "trials_charged", "trials_charged_twice", "lost_attempts",
                "tracebacks"]  # fmt: skip
        median = {k: statistics.median(r[k] for r in chaos) for k in keys}
        table([*chaos, {"seed": "median", **median}], ["seed", *keys, "load"])
    if disk:
        table(disk, ["row", "disk_full_outcomes", "charged_to_worker", "broken", "trials_charged",
                     "healthy_running_when_it_gave_up", "healthy_cancelled", "file_faults_logged",
                     "attempts_dense",
                     "attempts_never_started", "most_attempts", "completed_in_the_end",
                     "worker_exits", "load"])  # fmt: skip
    checked = [*outages, *chaos, *disk]
    missed = [misses(row) for row in checked]
    met = sum(not m for m in missed)
    print(f"rows and runs meeting every target: {met} of {len(checked)}; misses: "
          f"{'; '.join(m for ms in missed for m in ms) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
