"""What watches a running trial: heartbeats, live metrics, stalls, and signals to the program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_consumer import Lease, LeaseLost, Metric, Outcome, Reason, Status, Trial

from .conftest import (
    WRITE_RESULT,
    ConsumerFactory,
    children_of,
    cli,
    is_alive,
    python,
    wait_until_sync,
)

SLEEP_THEN_RESULT = "import time, sys; time.sleep(float(sys.argv[1]))\n" + WRITE_RESULT
WAIT_FOR_GATE_THEN_RESULT = (
    "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)\n" + WRITE_RESULT
)


def _lease(trial_id: str, token: int = 1) -> Lease:
    return Lease(trial=Trial(id=trial_id, params={}), token=token, worker="w")


async def _run_a_long_trial(make_consumer: ConsumerFactory, store: Beats, **kwargs: Any) -> Outcome:
    """
    Run trial ``t``, a 60 s script, beating to ``store`` (consumer options in ``kwargs``): it
    must end within 10 s.
    """
    consumer = make_consumer([*python(SLEEP_THEN_RESULT), "60"], store=store, grace=0.3, **kwargs)
    with anyio.fail_after(10):
        return await consumer.run(_lease("t"))


class Beats:
    """
    A heartbeat target that records beats and can lose, fail or hang on a given trial.

    A hanging trial's first call waits, shielded from the call's own bound, until ``release``
    is set; its later calls hang until the bound cancels them.
    """

    def __init__(self, lose: str = "", fail: str = "", hang: str = "") -> None:
        self.beats: dict[str, list[float]] = {}
        self.lose, self.fail, self.hang = lose, fail, hang
        self.release = anyio.Event()
        self.hanging = 0  # calls of the hanging trial in progress

    async def heartbeat(self, lease: Lease) -> None:
        self.beats.setdefault(lease.trial_id, []).append(anyio.current_time())
        if lease.trial_id == self.lose:
            raise LeaseLost(lease.trial_id)
        if lease.trial_id == self.fail:
            raise ConnectionError("database down")
        if lease.trial_id == self.hang:
            self.hanging += 1
            try:
                if len(self.beats[lease.trial_id]) == 1:
                    # the bound is a safety net only: the test sets release
                    with anyio.CancelScope(shield=True), anyio.move_on_after(20):
                        await self.release.wait()
                else:
                    await anyio.sleep_forever()
            finally:
                self.hanging -= 1


@pytest.mark.slow
@pytest.mark.anyio
async def test_lease_lost_kills_the_trial(make_consumer: ConsumerFactory) -> None:
    """A heartbeat answered with LeaseLost stops the script; the outcome is lost."""
    store = Beats(lose="t")
    outcome = await _run_a_long_trial(make_consumer, store, heartbeat=0.1)
    assert (outcome.status, outcome.reason) == (Status.LOST, Reason.LEASE_LOST)
    assert not is_alive(outcome.pid or 0)
    assert len(store.beats["t"]) == 1


@pytest.mark.slow
@pytest.mark.anyio
async def test_failing_heartbeats_end_as_lost(make_consumer: ConsumerFactory) -> None:
    """Heartbeats that keep failing are retried, then the trial counts as lost."""
    store = Beats(fail="t")
    outcome = await _run_a_long_trial(make_consumer, store, heartbeat=0.15, heartbeat_failures=3)
    assert outcome.status is Status.LOST
    assert "3 heartbeats failed" in outcome.message
    assert len(store.beats["t"]) == 3


@pytest.mark.slow
@pytest.mark.anyio
async def test_hanging_heartbeat_does_not_delay_others(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """One trial's hanging heartbeat neither holds back another's beats nor its completion."""
    gate = tmp_path / "gate"

    class Watching(Beats):
        """Lets the stuck call return, and the fine trial finish, after three fine beats."""

        during_hang = 0  # beats of the fine trial while the stuck trial's call hung

        async def heartbeat(self, lease: Lease) -> None:
            if lease.trial_id == "fine" and self.hanging:
                self.during_hang += 1
                if self.during_hang == 3:
                    gate.touch()
                    self.release.set()
            await super().heartbeat(lease)

    store = Watching(hang="stuck")
    consumer = make_consumer(
        [*python(WAIT_FOR_GATE_THEN_RESULT), "{gate}"],
        store=store,
        heartbeat=0.1,
        max_concurrency=2,
        grace=0.3,
    )
    stuck = Lease(trial=Trial(id="stuck", params={"gate": "/nonexistent"}), token=1, worker="w")
    fine = Lease(trial=Trial(id="fine", params={"gate": str(gate)}), token=1, worker="w")
    with anyio.fail_after(30):
        async with consumer.run_batch([stuck, fine]) as outcomes:
            seen = {outcome.trial_id: outcome async for outcome in outcomes}
    assert seen["fine"].status is Status.COMPLETED
    assert seen["stuck"].status is Status.LOST  # each later call is bounded: a hang is a failure
    # beats held behind the stuck call would never reach three: no gate, and a TimeoutError
    assert store.during_hang >= 3


@pytest.mark.slow
@pytest.mark.anyio
async def test_metrics_reach_the_orchestrator(make_consumer: ConsumerFactory) -> None:
    """Each line appended to the metrics file is handed over while the trial runs."""
    received: list[Metric] = []
    code = """
        import json, os, time
        for step in range(4):
            with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as f:
                f.write(json.dumps({'step': step, 'loss': 1.0 / (step + 1)}) + '\\n')
            time.sleep(0.1)
        with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as f:
            f.write('not json\\n')
        time.sleep(0.3)
    """
    consumer = make_consumer(python(code + "\n        " + WRITE_RESULT), on_metric=received.append)
    outcome = await consumer.run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED, outcome.stderr_tail
    assert [m.step for m in received] == [0, 1, 2, 3]
    assert received[1].values == {"loss": 0.5}
    assert {m.trial_id for m in received} == {"t"}


@pytest.mark.slow
@pytest.mark.anyio
async def test_stalled_trial_is_stopped(make_consumer: ConsumerFactory) -> None:
    """A script that stops writing anything is stopped as broken, reason stalled."""
    code = "import time; print('started', flush=True); time.sleep(60)"
    consumer = make_consumer(python(code), stall_timeout=0.5, grace=0.3)
    with anyio.fail_after(10):
        outcome = await consumer.run(Trial(id="t"))
    assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.STALLED)
    assert not is_alive(outcome.pid or 0)


@pytest.mark.slow
@pytest.mark.anyio
async def test_busy_trial_is_not_stalled(make_consumer: ConsumerFactory) -> None:
    """A script that keeps reporting metrics for longer than the stall timeout is left alone."""
    code = """
        import json, os, time
        for step in range(12):
            with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as f:
                f.write(json.dumps({'step': step}) + '\\n')
            time.sleep(0.1)
    """
    consumer = make_consumer(python(code + "\n        " + WRITE_RESULT), stall_timeout=0.5)
    outcome = await consumer.run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED, outcome.message


@pytest.mark.slow
def test_sigint_to_cli_leaves_no_process(tmp_path: Path) -> None:
    """SIGINT to a running `async-consumer run` stops every trial and exits 130."""
    params = tmp_path / "p.jsonl"
    params.write_text("".join(f'{{"i": {i}}}\n' for i in range(4)))
    marker = tmp_path / "started"
    marker.mkdir()
    script = (
        "import os, sys, time; open(os.path.join(sys.argv[1], str(os.getpid())), 'w').close();"
        " time.sleep(60)"
    )
    argv = cli("run", "--params", str(params), "-j", "4", "--grace", "0.5")
    argv += ["--base-dir", str(tmp_path / "trials"), "--store", f"sqlite:///{tmp_path}/store.db"]
    argv += ["--", sys.executable, "-c", script, str(marker), "{i}"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_sync(lambda: len(os.listdir(marker)) == 4, "four scripts to start", alive=run)
    pids = [int(p) for p in os.listdir(marker)]
    assert len(pids) == 4
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=10)
    assert run.returncode == 130, err
    assert b"4 interrupted" in out
    assert not any(is_alive(pid) for pid in pids)
    assert children_of(run.pid) == []
