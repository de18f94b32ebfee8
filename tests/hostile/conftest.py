"""Helpers of the hostile tests: figures measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
"""The project's root: where ``tests`` and ``benchmarks`` are."""


def figures_of(*argv: str, cwd: Path) -> dict[str, Any]:
    """
    The JSON that ``python ARGV...`` prints, run in ``cwd``; it must exit 0 within 240 s.

    A fresh process: inside pytest, memory freed by earlier tests would absorb a leak unseen.
    """
    done = subprocess.run(
        [sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=240, check=True
    )
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures
