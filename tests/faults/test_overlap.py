"""Overlapping runs of one trial: a frozen worker's run goes on while another worker re-runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from async_consumer import Reason, Status, TrialStatus
from async_consumer.stores import store_from_url

# attempt 1 (the frozen worker's) writes its objective late; attempt 2 writes nothing, and ends
# only once attempt 1 has written: with shared files, it would be recorded with 41.0
SCRIPT = """
import json, os, pathlib, sys, time
marks = pathlib.Path(sys.argv[1])
if os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1':
    (marks / 'started').touch()
    while not (marks / 'rerun').exists():
        time.sleep(0.02)
    json.dump(41.0, open(os.environ['ORION_RESULTS_PATH'], 'w'))
    (marks / 'stale-wrote').touch()
    time.sleep(60)
else:
    (marks / 'rerun').touch()
    while not (marks / 'stale-wrote').exists():
        time.sleep(0.02)
""".replace("{", "{{").replace("}", "}}")


def _worker(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "async_consumer._cli", "worker", "--store", url,
            "--heartbeat", "0.5", "--grace", "0.5", "--base-dir", str(tmp_path / "trials"),
            "--code-change", "ignore", "--", sys.executable, "-c", SCRIPT, str(tmp_path)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)  # polling what the scripts report


async def _add_and_get(url: str, trial_id: str | None = None):  # type: ignore[no-untyped-def]
    from async_consumer import Trial

    async with store_from_url(url) as store:
        if trial_id is None:
            await store.add([Trial(id="t")])
            return None
        return await store.get(trial_id)


@pytest.mark.slow
def test_a_rerun_never_takes_a_stale_runs_results(tmp_path: Path) -> None:
    """
    A worker frozen (SIGSTOP) past its lease while its trial runs on; another worker re-runs the
    trial, which writes nothing: the re-run is ``missing_results``, not the stale run's 41.0.
    """
    url = f"sqlite:///{tmp_path}/store.db"
    anyio.run(_add_and_get, url)
    frozen = _worker(url, tmp_path)
    try:
        _wait_for(tmp_path / "started")
        frozen.send_signal(signal.SIGSTOP)
        other = _worker(url, tmp_path)
        _, err = other.communicate(timeout=60)
        frozen.send_signal(signal.SIGCONT)
        _, frozen_err = frozen.communicate(timeout=60)
    finally:
        frozen.kill()
    assert other.returncode == 1, err.decode()  # its trial did not complete
    assert b"Traceback" not in err + frozen_err
    assert b"result not recorded" in frozen_err
    stored = anyio.run(_add_and_get, url, "t")
    assert stored.status is TrialStatus.BROKEN
    stale, rerun = stored.attempts
    assert stale.outcome is not None and stale.outcome.reason is Reason.LEASE_LOST
    assert rerun.outcome is not None
    assert (rerun.outcome.status, rerun.outcome.reason) == (Status.BROKEN, Reason.MISSING_RESULTS)
    assert rerun.outcome.objective is None


@pytest.mark.asyncio
async def test_checkpoints_survive_attempts_and_results_do_not(tmp_path: Path) -> None:
    """
    A file the script keeps in the working directory is there for the next attempt; the results,
    params and logs of the previous attempt are not where the next one looks.
    """
    from async_consumer import Consumer, Trial

    code = """
import json, os, pathlib
here = pathlib.Path(os.environ['ORION_WORKING_DIR'])
checkpoint = here / 'checkpoint'
results = pathlib.Path(os.environ['ORION_RESULTS_PATH'])
assert results.read_text() == '' and results.parent != here
step = int(checkpoint.read_text()) + 1 if checkpoint.exists() else 1
checkpoint.write_text(str(step))
json.dump(float(step), open(results, 'w'))
"""
    consumer = Consumer([sys.executable, "-c", code], base_dir=tmp_path / "trials")
    first = await consumer.run(Trial(id="t", attempt=1))
    second = await consumer.run(Trial(id="t", attempt=2))
    assert (first.objective, second.objective) == (1.0, 2.0), second.stderr_tail
    assert first.working_dir == second.working_dir
    assert Path(first.stdout_path).parent != Path(second.stdout_path).parent
    assert Path(first.stdout_path).exists()  # the first attempt's log is kept
