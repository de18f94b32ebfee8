"""Many workers on one PostgreSQL database: connections stay bounded, none crashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from async_consumer import Trial

from ..conftest import NewSchema, cli, postgres_url
from .conftest import completed_once, polling
from .sync_store import add_trials, stored_trials

WORKERS, JOBS, TRIALS = 32, 8, 96
SCRIPT = "import json, os; json.dump(1.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))"


COUNT = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
"""How many connections the test's workers hold (by application name)."""


@pytest.mark.slow
def test_32_workers_with_8_lanes_share_one_database(tmp_path: Path, new_schema: NewSchema) -> None:
    """
    32 workers x -j 8 on one database hold at most one connection each (``pool_size=1``), and
    every worker ends well with every trial completed once.
    """
    base = postgres_url()
    schema = new_schema()
    application = f"async_consumer_{schema}"
    url = f"{base}?schema={schema}"

    add_trials(url, (Trial(id=f"t{i:03d}") for i in range(TRIALS)))
    argv = cli("-q", "worker", "--store")
    argv += [f"{url}&pool_size=1&application_name={application}"]
    argv += ["-j", str(JOBS), "--base-dir", str(tmp_path / "trials")]
    argv += ["--code-change", "ignore"]
    argv += ["--", sys.executable, "-c", SCRIPT]
    with polling(base, COUNT, application, every=0.1) as counts:
        workers = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(WORKERS)
        ]
        errors = [w.communicate(timeout=300)[1].decode() for w in workers]
        stored = stored_trials(url)
    most = max(counts, default=0)
    for worker, err in zip(workers, errors, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err
    print(f"crowded: at most {most} connections for {WORKERS} workers")  # noqa: T201
    assert 0 < most <= WORKERS
    completed_once(stored, TRIALS)
