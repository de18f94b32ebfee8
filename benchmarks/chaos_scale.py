"""
Chaos at scale (issue 29): a fleet through PgBouncer while workers are killed, PgBouncer is
restarted and PostgreSQL is restarted, all in one run.

A private PostgreSQL (``initdb`` in a temporary directory, as the ``postgres`` user when run as
root, on a free port: never the shared server) behind a private PgBouncer (transaction mode,
``--pool`` server connections). ``--workers`` ``async-consumer worker`` processes x ``-j
--jobs`` run ``--trials`` trials; each run logs "trial attempt pid", sleeps 0.5-2 s and reports
its pid as its objective, so an accepted result is known to be its attempt's own run's. During
the run, at random points of its progress: 10 % of the workers (at least one) are SIGKILLed,
each replaced by a new one; PgBouncer is restarted once; PostgreSQL is restarted once
(``pg_ctl stop -m fast``, then ``start``).

Targets: every trial completed exactly once; 0 results accepted from a stale lease (an accepted
outcome whose pid is not its attempt's own run, or, when it says "completed from attempt N's
results", not attempt N's); 0 orphan processes; 0 worker tracebacks; every dead worker's
trials reserved again within 4 heartbeats of the dead attempt's last beat (store's clock).

    python benchmarks/chaos_scale.py [--workers 64] [--jobs 4] [--trials 5000]
        [--heartbeat 3] [--pool 10] [--seed 29]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from async_consumer import Status, StoredTrial, Trial, TrialStatus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from outage import PrivateServer, worker_argv
from tests.bouncer import Bouncer, running_pgbouncer
from tests.faults.sync_store import add_trials, left_behind, stored_trials

# each run logs "trial attempt pid", sleeps 0.5-2 s (by its pid) and reports its pid
SCRIPT = """echo "$ASYNC_CONSUMER_TRIAL_ID $ASYNC_CONSUMER_ATTEMPT $$" >>"$1"
ms=$(( 500 + ($$ * 7919) % 1500 ))
sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
echo "$$" >"$ORION_RESULTS_PATH"
"""
GAP_TARGET = 4.0  # heartbeats

Ran = tuple[str, int, int]  # trial, attempt, pid


class Fleet:
    """The benchmark's workers: started, killed and started again."""

    def __init__(self, argv: Sequence[str], logs: Path) -> None:
        self.argv, self.logs = list(argv), logs
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: dict[str, float] = {}  # the killed workers' names (``host:pid``): when

    def start(self) -> None:
        """One more worker, its stderr in a file of its own."""
        with (self.logs / f"w{len(self.workers)}.err").open("wb") as err:
            worker = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err)
        self.workers.append(worker)

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a running worker at random, and start another in its place."""
        alive = [w for w in self.workers if w.poll() is None]
        if not alive:
            return
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
        self.killed[f"{socket.gethostname()}:{victim.pid}"] = time.time()
        self.start()

    def alive(self) -> bool:
        return any(w.poll() is None for w in self.workers)

    def reap(self) -> None:
        """Kill (if still there) and wait for every worker."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.err")))


def read_runs(path: Path) -> list[Ran]:
    """What the trials' runs logged."""
    if not path.exists():
        return []
    rows = (line.split() for line in path.read_text().splitlines())
    return [(t, int(a), int(p)) for t, a, p in (r for r in rows if len(r) == 3)]


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as runs:
        return sum(1 for _ in runs)


class LoadSampler:
    """The highest 1-minute load average seen, sampled every few seconds in a thread."""

    def __init__(self) -> None:
        self.most = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.most = max(self.most, os.getloadavg()[0])

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.most, os.getloadavg()[0])


def schedule(workers: int, trials: int, rng: random.Random) -> list[tuple[int, str]]:
    """The faults, each at the number of runs begun when it strikes, in order."""
    kills = max(1, round(workers / 10))
    points = [(int(trials * rng.uniform(0.05, 0.85)), "kill") for _ in range(kills)]
    points.append((int(trials * rng.uniform(0.2, 0.4)), "pgbouncer"))
    points.append((int(trials * rng.uniform(0.5, 0.7)), "postgres"))
    return sorted(points)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One chaos run: its raw figures."""
    rng = random.Random(args.seed)
    faults = schedule(args.workers, args.trials, rng)
    server = PrivateServer(tmp / "server")
    done: list[tuple[float, str]] = []
    try:
        direct = f"{server.base}?schema=chaos"
        add_trials(direct, (Trial(id=f"t{i:05d}") for i in range(args.trials)))
        runs, base_dir, logs = tmp / "runs.txt", tmp / "trials", tmp / "logs"
        logs.mkdir()
        options = ["--heartbeat", str(args.heartbeat), "--grace", "0.5"]
        options += ["--store-outage-limit", "120"]
        clients = args.workers * 3 + 100
        with running_pgbouncer(server.base, pool_size=args.pool, max_client_conn=clients) as pgb:
            argv = worker_argv(f"{pgb.url}?schema=chaos", args.jobs, base_dir, options)
            fleet = Fleet([*argv, "sh", "-c", SCRIPT, "trial", str(runs)], logs)
            load_before = os.getloadavg()
            sampler = LoadSampler()
            began = time.monotonic()
            try:
                for _ in range(args.workers):
                    fleet.start()
                _inject(faults, fleet, pgb, server, runs, rng, began, done)
                for worker in fleet.workers:
                    worker.wait(timeout=args.bound)
            finally:
                fleet.reap()
            drain = time.monotonic() - began
            load_most = sampler.stop()
        time.sleep(1.0)  # a killed worker's trial may still be ending its own process group
        orphans = left_behind(base_dir)
        stored = stored_trials(direct)
    finally:
        server.close()
    return {
        "stored": stored,
        "ran": read_runs(runs),
        "fleet": fleet,
        "stderr": fleet.stderr(),
        "orphans": orphans,
        "drain": drain,
        "load_before": load_before,
        "load_most": load_most,
        "load_after": os.getloadavg(),
        "faults": done,
        "bouncer_restarts": pgb.restarts,
    }


def _inject(
    faults: list[tuple[int, str]],
    fleet: Fleet,
    bouncer: Bouncer,
    server: PrivateServer,
    runs: Path,
    rng: random.Random,
    began: float,
    done: list[tuple[float, str]],
) -> None:
    """Strike each fault once that many runs have begun (or never, if the fleet has left)."""
    for at, kind in faults:
        while count_lines(runs) < at:
            if not fleet.alive():
                print(f"every worker left before the {kind} fault at {at} runs", flush=True)
                return
            time.sleep(0.2)
        if kind == "kill":
            fleet.kill_one(rng)
        elif kind == "pgbouncer":
            bouncer.restart()
        else:
            server.stop()
            server.start()
        done.append((time.monotonic() - began, kind))
        print(f"{time.monotonic() - began:7.1f} s, {at} runs begun: {kind}", flush=True)


def stale_accepted(trial: StoredTrial, ran: set[Ran]) -> bool:
    """Whether the trial's accepted result is not its attempt's own run's (nor the one named)."""
    done = [a for a in trial.attempts if a.outcome and a.outcome.status is Status.COMPLETED]
    if not done or done[0].outcome is None:
        return False
    outcome = done[0].outcome
    objective = outcome.objective
    earlier = re.match(r"completed from attempt (\d+)'s results", outcome.message)
    if earlier is None:
        return (trial.id, done[0].number, outcome.pid) not in ran or objective != outcome.pid
    number = int(earlier[1])
    return not (
        number < done[0].number
        and objective is not None
        and (trial.id, number, int(objective)) in ran
    )


def figures(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The run's figures, from what it left."""
    stored: list[StoredTrial] = raw["stored"]
    ran: list[Ran] = raw["ran"]
    fleet: Fleet = raw["fleet"]
    once = 0
    for trial in stored:
        done = [a for a in trial.attempts if a.outcome and a.outcome.status is Status.COMPLETED]
        ok = trial.status is TrialStatus.COMPLETED and len(done) == 1
        once += ok and done[0] is trial.attempts[-1]
    killed = fleet.killed
    gaps: list[tuple[float, str]] = []  # heartbeats, what the dead attempt was and became
    for trial in stored:
        for before, after in zip(trial.attempts, trial.attempts[1:], strict=False):
            # a trial its worker held when it was killed: re-reserved after the kill
            if before.worker in killed and after.reserved_at.timestamp() > killed[before.worker]:
                last = before.heartbeat_at or before.reserved_at
                gap = (after.reserved_at - last).total_seconds() / args.heartbeat
                ended = before.outcome.message[:60] if before.outcome else "-"
                gaps.append((gap, f"{trial.id}/{before.number}: {ended}"))
    unfinished_dead = sum(
        1
        for t in stored
        if t.attempts and t.attempts[-1].worker in killed and not t.attempts[-1].outcome
    )
    runs_per_trial = Counter(t for t, _, _ in ran)
    outcomes = Counter(
        f"{a.outcome.status}/{a.outcome.reason or '-'}" if a.outcome else "none"
        for t in stored
        for a in t.attempts
    )
    exits = Counter(w.returncode for w in fleet.workers)
    err: str = raw["stderr"]
    return {
        "trials": len(stored),
        "completed_once": once,
        "stale_accepted": sum(stale_accepted(t, set(ran)) for t in stored),
        "orphans": len(raw["orphans"]),
        "tracebacks": err.count("Traceback"),
        "killed": len(fleet.killed),
        "bouncer_restarts": raw["bouncer_restarts"],
        "postgres_restarts": sum(kind == "postgres" for _, kind in raw["faults"]),
        "dead_trials": len(gaps),
        "dead_unfinished": unfinished_dead,
        "gap_median": statistics.median(g for g, _ in gaps) if gaps else None,
        "gap_max": max(g for g, _ in gaps) if gaps else None,
        "gap_worst": max(gaps)[1] if gaps else "-",
        "not_completed_why": dict(
            Counter(
                re.sub(r"\d+", "N", a.outcome.message[:70])
                for t in stored
                for a in t.attempts
                if a.outcome and a.outcome.status is not Status.COMPLETED
            )
        ),
        "attempts": sum(len(t.attempts) for t in stored),
        "runs": len(ran),
        "run_twice": sum(n > 1 for n in runs_per_trial.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "worker_exits": {str(k): v for k, v in sorted(exits.items(), key=lambda kv: str(kv[0]))},
        "outages_logged": err.count("store unreachable"),
        "drain": raw["drain"],
        "floor": args.trials * 1.25 / (args.workers * args.jobs),
        "load": "{:.1f} before, {:.1f} most (1 min), {:.1f}/{:.1f} after (1/5 min)".format(
            raw["load_before"][0], raw["load_most"], *raw["load_after"][:2]
        ),
        "faults": ", ".join(f"{kind} {at:.0f} s" for at, kind in raw["faults"]),
    }


def report(f: dict[str, Any]) -> None:
    """Print the table and the summary line."""
    gap = "-" if f["gap_max"] is None else f"{f['gap_median']:.2f} / {f['gap_max']:.2f}"
    rows = [
        ("trials completed exactly once", f"{f['completed_once']:,} / {f['trials']:,}", "all"),
        ("results accepted from a stale lease", f["stale_accepted"], "0"),
        ("orphan processes left", f["orphans"], "0"),
        ("worker tracebacks", f["tracebacks"], "0"),
        (
            f"dead workers' trials ({f['dead_trials']}): heartbeats from last beat to re-run, median / max",
            gap,
            f"<= {GAP_TARGET:g}",
        ),
        ("the worst of them (trial/attempt: its outcome)", f["gap_worst"], ""),
        ("faults (seconds into the run)", f["faults"], ""),
        ("workers killed / PgBouncer / PostgreSQL restarts",
         f"{f['killed']} / {f['bouncer_restarts']} / {f['postgres_restarts']}", "10 % / 1 / 1"),
        ("attempts / runs logged / trials run more than once",
         f"{f['attempts']:,} / {f['runs']:,} / {f['run_twice']}", ""),
        ("attempts' outcomes", f["outcomes"], ""),
        ("why attempts ended other than completed", f["not_completed_why"], ""),
        ("worker exit codes", f["worker_exits"], ""),
        ("outages logged by workers", f["outages_logged"], ""),
        ("drain (first worker start to last exit)",
         f"{f['drain']:.1f} s, {f['drain'] / f['floor']:.2f}x the floor of {f['floor']:.1f} s", ""),
        ("load average", f["load"], ""),
    ]  # fmt: skip
    print("| figure | measured | target |")
    print("|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")
    print()
    missed = []
    if f["completed_once"] != f["trials"]:
        missed.append(f"{f['trials'] - f['completed_once']} trials not completed exactly once")
    keys = ("stale_accepted", "orphans", "tracebacks", "dead_unfinished")
    missed += [f"{key} {f[key]}" for key in keys if f[key]]
    if f["gap_max"] is not None and f["gap_max"] > GAP_TARGET:
        missed.append(f"a dead worker's trial re-run {f['gap_max']:.2f} heartbeats after its beat")
    print(f"chaos at scale: {f['completed_once']}/{f['trials']} completed once, "
          f"{f['stale_accepted']} stale accepted, {f['orphans']} orphans, {f['tracebacks']} "
          f"tracebacks, gap max {gap.split(' / ')[-1]} heartbeats, drain {f['drain']:.1f} s; "
          f"misses: {'; '.join(missed) or 'none'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--heartbeat", type=float, default=3.0)
    parser.add_argument("--pool", type=int, default=10, help="PgBouncer's server connections")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--bound", type=float, default=3600.0, help="most seconds to wait")
    args = parser.parse_args()
    print(f"{args.workers} workers x -j {args.jobs}, {args.trials} trials of 0.5-2 s, "
          f"--heartbeat {args.heartbeat:g}, PgBouncer pool {args.pool}, seed {args.seed}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="chaos-scale-") as tmp:
        raw = run(args, Path(tmp))
    report(figures(raw, args))


if __name__ == "__main__":
    main()
