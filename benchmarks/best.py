"""
The best trial of a large search: ``store.best`` against reading every completed trial (issue 15).

Fills a fresh store with ``--trials`` completed trials (added with ``async-consumer add`` from a
parameter file, then finished through the store's API with outcomes the size of a real one's:
its command, its contract's environment, its files' paths), and then, ``--runs`` times each,
interleaved:

  - ``read``: what the summary of ``run`` and ``worker`` did before ``store.best``: every
    completed trial read, a page of 1,000 at a time, and ``best_trial`` over them;
  - ``best``: ``store.best()``, the store's own answer (an index on the objective);
  - ``resume``: ``async-consumer run`` of the same parameter file (a fresh process): every
    trial is already completed, so this is the whole cost of looking at a finished search
    again: start-up, the file read and checked, the summary.

Prints the median seconds of each, in-process ones included, and the ratio ``read`` / ``best``.
SQLite by default (in ``--dir``); ``--postgres URL`` measures a fresh schema there instead.

    python benchmarks/best.py [--trials 100000] [--runs 5] [--dir DIR] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import anyio

from async_consumer import Outcome, best_trial
from async_consumer._models import StoredTrial, TrialStatus
from async_consumer.stores import Finish, TrialStore, store_from_url

sys.path.insert(0, str(Path(__file__).parent))
from store_beats import drop_schema  # the benchmark beside this one

COMMAND = str(Path(sys.executable).parent / "async-consumer")
SCRIPT = [sys.executable, "-c", "pass"]


def outcome_of(trial_id: str, x: int) -> Outcome:
    """A completed outcome the size of a real one, its objective a function of ``x``."""
    run = f"/home/me/search/trials/default/{trial_id}/attempts/1"
    names = ("TRIAL_ID", "ATTEMPT", "WORKING_DIR", "RESULTS_PATH", "PARAMS_PATH", "METRICS_PATH")
    env = {f"{prefix}_{name}": f"{run}/{name.lower()}" for name in names for prefix in "AB"}
    now = datetime.now(UTC)
    return Outcome.model_validate(
        {
            "trial_id": trial_id,
            "status": "completed",
            "results": [{"name": "loss", "type": "objective", "value": float((x * 7919) % 100003)}],
            "argv": ["python", "train.py", "--x", str(x)],
            "env": env,
            "host": "node-1",
            "pid": 1000 + x,
            "started_at": now,
            "ended_at": now,
            "cpu_seconds": 1.5,
            "peak_rss_bytes": 10**8,
            "working_dir": run,
            "stdout_path": f"{run}/stdout.log",
            "stderr_path": f"{run}/stderr.log",
        }
    )


async def fill(url: str, params: Path, trials: int) -> None:
    """Add the parameter file's trials with the command, then complete each."""
    params.write_text("".join(json.dumps({"x": x}) + "\n" for x in range(trials)))
    await anyio.run_process([COMMAND, "add", "--params", str(params), "--store", url])
    async with store_from_url(url) as store:
        while leases := await store.reserve_many("bench", 1000):
            xs = [int(str(lease.trial.params["x"])) for lease in leases]
            await store.finish_many(
                [
                    Finish(lease, outcome_of(lease.trial_id, x))
                    for lease, x in zip(leases, xs, strict=True)
                ]
            )


async def read_best(store: TrialStore) -> StoredTrial | None:
    """The best the way the summary found it before: every completed trial read."""
    best: StoredTrial | None = None
    offset = 0
    while page := await store.list(TrialStatus.COMPLETED, offset=offset, limit=1000):
        best = best_trial([*([best] if best else []), *page])
        offset += len(page)
    return best


async def timed(work: Awaitable[object]) -> float:
    """Wall seconds of one awaited call."""
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    """Measure on a fresh store in a temporary directory (or schema, dropped at the end)."""
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-best-") as tmp:
        base = Path(tmp)
        url, schema = f"sqlite:///{base / 'store.db'}", f"bench_{uuid.uuid4().hex[:12]}"
        if args.postgres:
            url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
        try:
            await measure(args, url, base)
        finally:
            if args.postgres:
                await drop_schema(args.postgres, schema)


async def measure(args: argparse.Namespace, url: str, base: Path) -> None:
    """Fill the store, then time each way of finding its best trial, interleaved."""
    start = time.perf_counter()
    await fill(url, base / "params.jsonl", args.trials)
    filled = time.perf_counter() - start
    resume = [COMMAND, "run", "--params", str(base / "params.jsonl"), "--store", url]
    resume += ["--base-dir", str(base / "trials"), "--", *SCRIPT]
    times: dict[str, list[float]] = {"read": [], "best": [], "resume": []}
    async with store_from_url(url) as store:
        expected = await read_best(store)
        if expected is None or expected != await store.best():
            msg = "store.best() is not the best trial read"
            raise RuntimeError(msg)
        for _ in range(args.runs):
            times["read"].append(await timed(read_best(store)))
            times["best"].append(await timed(store.best()))
            times["resume"].append(await timed(anyio.run_process(resume)))
    print(f"{args.trials} completed trials ({url.split(':')[0]}, filled in {filled:.1f} s); "
          f"median of {args.runs}")  # fmt: skip
    print(f"{'case':<8} {'seconds':>9}")
    med = {name: statistics.median(values) for name, values in times.items()}
    for name, value in med.items():
        print(f"{name:<8} {value:9.4f}")
    print(f"ratio (read every completed trial / store.best): {med['read'] / med['best']:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the SQLite store goes")
    parser.add_argument("--postgres", help="a PostgreSQL URL: a fresh schema there instead")
    anyio.run(main, parser.parse_args())
