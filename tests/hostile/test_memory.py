"""The consumer's memory stays flat over thousands of trivial trials."""

from __future__ import annotations

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
