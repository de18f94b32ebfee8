"""
``--sampler gp``: Optuna's Gaussian process sampler, which needs PyTorch, through the command.

Where PyTorch is missing the search test skips, unless ``ASYNC_CONSUMER_REQUIRE_TORCH`` is set
(``.ci/run`` installs PyTorch for one interpreter and sets it there): then it fails. Where
PyTorch is missing, ``--sampler gp`` is refused in one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from async_consumer._search.samplers import RandomSampler
from async_consumer._search.space import Space

pytest.importorskip("optuna")

REQUIRE = "ASYNC_CONSUMER_REQUIRE_TORCH"
"""Set (as ``.ci/run`` does for one interpreter): a missing PyTorch fails the test, not skips."""

HAS_TORCH = importlib.util.find_spec("torch") is not None

QUADRATIC = (
    "import json, os, sys; x = float(sys.argv[sys.argv.index('-x') + 1]); "
    "json.dump((x - 2) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)
PRIOR = "uniform(-5, 5)"


def _run(store: Path, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "async_consumer._cli", "-q", "run", "--store"]
    argv += [f"sqlite:///{store}", "--base-dir", str(store.parent / "trials"), *options]
    argv += ["--", sys.executable, "-c", QUADRATIC, f"-x~{PRIOR}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def _trials(store: Path) -> dict[int, tuple[float, str, float | None]]:
    """Each trial's ``x``, status and objective, by its ``k``."""
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT id, trial, status, objective FROM trials").fetchall()
    conn.close()
    return {
        int(tid.split("-")[1]): (json.loads(trial)["params"]["x"], status, objective)
        for tid, trial, status, objective in rows
    }


@pytest.mark.slow
def test_gp_search_learns_after_its_random_start(tmp_path: Path) -> None:
    """
    ``--sampler gp -n 14``: 14 trials completed; the first 10 are the seeded random sampler's
    points (the startup), the last ones the Gaussian process's, which close in on the minimum
    at x = 2 (a random point lands within 0.22 of it once in 22).
    """
    if not HAS_TORCH:
        if os.environ.get(REQUIRE):
            pytest.fail(f"PyTorch is required here ({REQUIRE} is set): pip install torch")
        pytest.skip("the gp sampler needs PyTorch: pip install torch")
    store = tmp_path / "s.db"
    done = _run(store, "-n", "14", "-j", "1", "--sampler", "gp", "--seed", "1", "--pruner", "none")
    assert done.returncode == 0, done.stderr
    trials = _trials(store)
    assert sorted(trials) == list(range(1, 15))
    assert {status for _, status, _ in trials.values()} == {"completed"}
    random = RandomSampler(Space.of({"x": PRIOR}), seed=1)
    assert all(trials[k][0] == random.ask(k)["x"] for k in range(1, 11))
    # the 11th may be suggested before the 10th is recorded: still the startup's
    modelled = [k for k in range(11, 15) if trials[k][0] != random.ask(k)["x"]]
    assert len(modelled) >= 3, trials
    objectives = [trials[k][2] for k in modelled]
    assert min(o if o is not None else float("inf") for o in objectives) < 0.05, trials


@pytest.mark.skipif(HAS_TORCH, reason="PyTorch is installed here: gp is not refused")
def test_gp_without_torch_is_refused_in_one_line(tmp_path: Path) -> None:
    """Without PyTorch, ``--sampler gp``: one line saying what to install, exit 2, no store."""
    store = tmp_path / "s.db"
    done = _run(store, "-n", "3", "--sampler", "gp")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "the sampler 'gp' needs torch: pip install torch" in done.stderr, done.stderr
    assert not store.exists()
