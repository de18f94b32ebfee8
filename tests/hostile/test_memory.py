"""The consumer's memory stays flat over thousands of trivial trials."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import cli
from .conftest import ROOT, figures_of

pytestmark = pytest.mark.slow


def test_rss_after_2000_trials_is_within_10_percent_of_after_200(tmp_path: Path) -> None:
    """RSS after 2,000 trivial trials (8 at a time) is within 10 % of what it was after 200."""
    figures = figures_of("-m", "tests.hostile.memory_probe", str(tmp_path), "2000", "200", cwd=ROOT)
    assert figures["done"] == figures["completed"] == 2000
    early, late = figures["rss_early"], figures["rss_late"]
    assert abs(late - early) <= 0.10 * early, f"RSS {early} after 200, {late} after 2,000"


def _peak_rss_of_run(tmp_path: Path, lines: int, outcomes: int) -> int:
    """Peak RSS (KiB) of ``run -j 8`` on a ``lines``-line file, stopped after ``outcomes``."""
    work = tmp_path / str(lines)
    work.mkdir()
    params = work / "p.jsonl"
    params.write_text("".join(json.dumps({"x": i, "name": f"t{i}"}) + "\n" for i in range(lines)))
    argv = cli("run", "-j", "8", "--params", str(params), "--store")
    argv += [f"sqlite:///{work}/s.db", "--base-dir", str(work / "t")]
    argv += ["--", "sh", "-c", 'echo 1 > "$ORION_RESULTS_PATH"']
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    seen = 0
    with child.stdout:
        for line in child.stdout:
            seen += line.startswith("ok ")
            if seen == outcomes:
                child.send_signal(signal.SIGINT)  # a stopped run still prints its summary
                break
        rest = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert seen == outcomes and "trials:" in rest, rest
    return usage.ru_maxrss


def test_a_runs_memory_does_not_grow_with_its_parameter_file(tmp_path: Path) -> None:
    """
    ``run`` on a 50,000-line file peaks below 1.5 times its peak on a 1,000-line file.

    Both run about the same trials (stopped after 50 outcomes), read, add and summarise their
    whole file. A file read whole would give a ratio near 5 (52 and 257 MiB); a busy machine
    changes timings, not what is resident.
    """
    small = _peak_rss_of_run(tmp_path, 1000, 50)
    large = _peak_rss_of_run(tmp_path, 50_000, 50)
    assert large < 1.5 * small, f"peak RSS {small} KiB at 1,000 lines, {large} KiB at 50,000"


SHELL_SCRIPTS = {
    "completed": 'echo 1.0 > "$ORION_RESULTS_PATH"',
    "missing_results": "true",
    "invalid_results": 'echo "[1, 2" > "$ORION_RESULTS_PATH"',
    "exit_code": "exit 3",
    "timeout": "sleep 5",
}


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", list(SHELL_SCRIPTS))
async def test_outcomes_leave_no_reference_cycles(tmp_path: Path, reason: str) -> None:
    """
    However a trial ends, what it used is freed at once, not left for the cycle collector.

    With a thousand trials at once, a full collection of what they leave behind stalls the
    event loop (and every heartbeat) for tens of milliseconds.
    """
    from async_consumer import Consumer, Trial

    consumer = Consumer(
        ["/bin/sh", "-c", SHELL_SCRIPTS[reason]],
        base_dir=tmp_path,
        max_concurrency=4,
        timeout=0.3,
        grace=0.1,
        code_change="ignore",
    )
    await consumer.map([Trial(id=f"warm-{i}") for i in range(4)])  # first-use caches
    gc.collect()
    gc.disable()
    try:
        outcomes = await consumer.map([Trial(id=f"t{i}") for i in range(12)])
        left = gc.collect()
    finally:
        gc.enable()
    assert {str(o.reason or "completed") if o else None for o in outcomes} == {reason}
    assert left == 0, f"{left} objects in reference cycles after 12 trials"


@pytest.mark.asyncio
async def test_watched_trials_leave_no_reference_cycles(tmp_path: Path) -> None:
    """Leased trials with a heartbeat, a metrics follower and an echo leave no cycles either."""
    from async_consumer import Consumer, Trial
    from async_consumer.stores import MemoryStore

    store = MemoryStore()
    await store.add(Trial(id=f"t{i}") for i in range(16))
    leases = [lease for _ in range(16) if (lease := await store.reserve("w")) is not None]
    script = (
        'echo \'{"step": 1, "loss": 0.5}\' >> "$ASYNC_CONSUMER_METRICS_PATH"; sleep 0.3; '
        + (SHELL_SCRIPTS["completed"])
    )
    consumer = Consumer(
        ["/bin/sh", "-c", script],
        base_dir=tmp_path,
        max_concurrency=8,
        store=store,
        heartbeat=0.1,
        on_metric=lambda metric: None,
        echo=True,
        code_change="ignore",
    )
    await consumer.map(leases[:4])
    gc.collect()
    gc.disable()
    try:
        outcomes = await consumer.map(leases[4:])
        left = gc.collect()
    finally:
        gc.enable()
    assert all(o is not None and o.is_completed for o in outcomes)
    assert left == 0, f"{left} objects in reference cycles after 12 trials"


def test_tune_gc_freezes_the_set_up_and_collects_young_objects_less_often() -> None:
    """``tune_gc`` raises the youngest generation's threshold and freezes what exists."""
    from async_consumer import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (10_000, before[1], before[2])
        assert gc.get_freeze_count() > 0
        with pytest.raises(ValueError, match="young_threshold must be positive, not 0"):
            tune_gc(0)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_the_command_tunes_the_collector() -> None:
    """The ``async-consumer`` command runs with ``tune_gc`` applied (``main`` alone does not)."""
    probe = (
        "import gc, sys\n"
        "import async_consumer._cli.main as cli\n"
        "cli.main = lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 0) or 0\n"
        "sys.exit(cli.console())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["10000", "True"]
