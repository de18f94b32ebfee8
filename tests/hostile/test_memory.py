"""The consumer's memory stays flat over thousands of trivial trials."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_rss_after_2000_trials_is_within_10_percent_of_after_200(tmp_path: Path) -> None:
    """RSS after 2,000 trivial trials (8 at a time) is within 10 % of what it was after 200."""
    probe = subprocess.run(
        [sys.executable, "-m", "tests.hostile.memory_probe", str(tmp_path), "2000", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    figures = json.loads(probe.stdout)
    assert figures["done"] == figures["completed"] == 2000
    early, late = figures["rss_early"], figures["rss_late"]
    assert abs(late - early) <= 0.10 * early, f"RSS {early} after 200, {late} after 2,000"


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

    consumer = Consumer(["/bin/sh", "-c", SHELL_SCRIPTS[reason]], base_dir=tmp_path,
                        max_concurrency=4, timeout=0.3, grace=0.1, code_change="ignore")  # fmt: skip
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
