"""A search launched on Slurm: the plan in the store, every worker suggests, exactly -n trials."""

from __future__ import annotations

import subprocess
import sys

import pytest

from async_consumer import TrialStatus

from ..conftest import cli
from .conftest import Fleet

pytestmark = pytest.mark.slow

# x² + 1 on x in [-5, 5] (Orion's --x~ is given to the script as -x): the best is close to 1
SQUARE = (
    "import json, os, sys; a = sys.argv; x = float(a[a.index('-x') + 1]); "
    "json.dump(x * x + 1, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def test_launch_slurm_runs_a_search_on_its_workers(fleet: Fleet) -> None:
    """``launch slurm -n 40`` with a prior: 3 workers suggest and run exactly 40 trials."""
    argv = cli("launch", "slurm", "--store", fleet.url, "--workers", "3", "-j", "2")
    argv += ["-n", "40", "--seed", "7", "--time", "10", "--heartbeat", "1"]
    argv += ["--", sys.executable, "-c", SQUARE, "--x~uniform(-5, 5)"]
    done = subprocess.run(argv, cwd=fleet.workdir, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "searching: 40 trials" in done.stderr
    fleet.jobs.append(done.stdout.strip())
    fleet.wait_done()
    trials = fleet.trials()
    assert sorted(t.id for t in trials) == sorted(f"default-{k}" for k in range(1, 41))
    logs = [log.read_text()[-2000:] for log in fleet.workdir.glob("slurm-*.out")]
    assert {t.status for t in trials} == {TrialStatus.COMPLETED}, logs
    xs = [t.trial.params["x"] for t in trials]
    assert all(isinstance(x, float) and -5 <= x <= 5 for x in xs)
    best = min(t.outcome.objective for t in trials if t.outcome and t.outcome.objective)
    assert 1 <= best < 1.5  # a point within 0.7 of 0 among 40: random's odds alone are 1 - 0.86⁴⁰
    workers = {a.worker for t in trials for a in t.attempts}
    assert len(workers) >= 2  # more than one worker suggested and ran
