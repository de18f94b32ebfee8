"""
ASHA and Hyperband across a fleet: a worker's pruner sees the rungs of the trials running on
another worker, and every worker puts a trial in the same Hyperband bracket.
"""

from __future__ import annotations

import binascii
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import TrialStatus
from async_consumer.stores import store_from_url

from .conftest import wait_until_sync

pytest.importorskip("optuna")

# each trial's loss curve by its k (CURVES, a JSON object in the environment); a trial named in
# HOLD waits for the file RELEASE after its curve, one in HOPELESS to be stopped, the others
# complete with their last value
SCRIPT = """
import json, os, time
k = os.environ['ASYNC_CONSUMER_TRIAL_ID'].split('-')[1]
curve = json.loads(os.environ['CURVES'])[k]
with open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a') as metrics:
    for step, loss in enumerate(curve):
        metrics.write(json.dumps({'step': step, 'loss': loss}) + '\\n')
        metrics.flush()
if k in os.environ['HOLD'].split():
    while not os.path.exists(os.environ['RELEASE']):
        time.sleep(0.05)
if k in os.environ['HOPELESS'].split():
    time.sleep(600)
result = [{'name': 'loss', 'type': 'objective', 'value': curve[-1]}]
json.dump(result, open(os.environ['ORION_RESULTS_PATH'], 'w'))
"""


def _start(
    command: str, url: str, base: Path, options: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "async_consumer._cli", "-q", command, "--store", url]
    argv += ["-j", "1", "--grace", "2", "--heartbeat", "1", "--base-dir", str(base)]
    argv += [*options, "--", sys.executable, "-c", SCRIPT, "-x~uniform(0, 1)"]
    out = subprocess.DEVNULL
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env={**os.environ, **env})


async def _trials(url: str) -> dict[str, tuple[TrialStatus, str, str]]:
    async with store_from_url(url) as store:
        stored = await store.list()
    return {
        t.id: (
            t.status,
            t.attempts[-1].worker if t.attempts else "",
            t.outcome.message if t.outcome else "",
        )
        for t in stored
    }


async def _steps(url: str, trial_id: str) -> set[int]:
    async with store_from_url(url) as store:
        values, _ = await store.read_values()
    return {step for tid, step, _ in values if tid == trial_id}


def _status(url: str, trial_id: str) -> TrialStatus | None:
    found = anyio.run(_trials, url).get(trial_id)
    return found[0] if found else None


def _fleet(
    url: str,
    tmp_path: Path,
    options: list[str],
    env: dict[str, str],
    *,
    held: str,
    steps: int,
    pruned: str,
    experiment: str = "default",
) -> dict[str, tuple[TrialStatus, str, str]]:
    """
    Worker A (``run`` with ``options``) runs the search's first trials, and holds ``held``
    running once its ``steps`` values are in the store; worker B then runs ``pruned``, which
    must be pruned. Both leave once A's held trial is released.
    """
    release = tmp_path / "release"
    env = {**env, "RELEASE": str(release)}
    a = _start("run", url, tmp_path / "a", options, env)
    b: subprocess.Popen[bytes] | None = None
    try:
        wait_until_sync(
            lambda: len(anyio.run(_steps, url, held)) >= steps,
            f"A's running {held} has its values in the store",
            alive=a,
            every=0.1,
        )
        b = _start("worker", url, tmp_path / "b", ["--experiment", experiment], env)
        wait_until_sync(
            lambda: _status(url, pruned) is TrialStatus.PRUNED,
            f"B's {pruned} pruned",
            alive=b,
            every=0.1,
        )
        release.touch()
        for process in (a, b):
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err.decode()
    finally:
        for left in (a, b):
            if left is not None and left.returncode is None:
                left.kill()
                left.communicate()
    return anyio.run(_trials, url)


@pytest.mark.slow
def test_asha_ranks_a_trial_against_another_workers_running_trial(
    store_url: str, tmp_path: Path
) -> None:
    """
    A completes trial 1 (a poor curve) and runs trial 2 (a good one); B's trial 3 is worse than
    trial 2 at ASHA's first rung (step 1): pruned there. Against the completed trial alone it
    would be the best of its rung, and promoted.
    """
    curves = {"1": [5.0] * 5, "2": [0.1] * 5, "3": [1.0] * 5}
    options = ["-n", "3", "--sampler", "random", "--seed", "1", "--pruner", "asha"]
    options += ["--metric", "loss"]
    env = {"CURVES": json.dumps(curves), "HOLD": "2", "HOPELESS": "3"}
    trials = _fleet(
        store_url, tmp_path, options, env, held="default-2", steps=5, pruned="default-3"
    )
    status, worker, message = trials["default-3"]
    assert status is TrialStatus.PRUNED and message.startswith("pruned at step 1:"), message
    assert worker != trials["default-2"][1]  # B ran it, A the others
    assert trials["default-1"][0] is trials["default-2"][0] is TrialStatus.COMPLETED


def _bracket(name: str, k: int, budgets: list[int]) -> int:
    """Optuna's Hyperband bracket of the study ``name``'s trial number ``k - 1``."""
    n = binascii.crc32(f"{name}_{k - 1}".encode()) % sum(budgets)
    for bracket, budget in enumerate(budgets):
        n -= budget
        if n < 0:
            return bracket
    raise AssertionError(n)


@pytest.mark.slow
def test_hyperband_brackets_are_the_same_on_every_worker(store_url: str, tmp_path: Path) -> None:
    """
    Curves of 10 steps: Hyperband's maximum resource is 10 (settled from A's first completed
    trial), so 3 brackets with budgets 9, 5 and 3, whose first rungs are at steps 1, 3 and 9.
    A completes trials 1 to 3 and holds 4; B's hopeless trial 5 is pruned at the first rung of
    its bracket: bracket 1 (step 3), that of trials 1 and 3 (the experiment "band"'s brackets).
    Were the bracket B's own choice, it would be pruned at another step, or not at all.
    """
    assert [_bracket("band", k, [9, 5, 3]) for k in range(1, 6)] == [1, 2, 1, 0, 1]
    curves = {str(k): [1 / (step + 1) for step in range(10)] for k in range(1, 5)}
    curves["5"] = [10.0] * 10
    options = ["-n", "5", "--sampler", "random", "--seed", "1", "--pruner", "hyperband"]
    options += ["--metric", "loss", "--experiment", "band"]
    env = {"CURVES": json.dumps(curves), "HOLD": "4", "HOPELESS": "5"}
    trials = _fleet(
        store_url,
        tmp_path,
        options,
        env,
        held="band-4",
        steps=10,
        pruned="band-5",
        experiment="band",
    )
    status, worker, message = trials["band-5"]
    assert status is TrialStatus.PRUNED and message.startswith("pruned at step 3:"), message
    assert worker != trials["band-4"][1]


def test_tpe_under_hyperband_learns_from_the_bracket_of_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Under Hyperband, Optuna's sampler sees only the trials of its new trial's bracket. A trial
    asked as the search's k-th is sampled in the bracket of k (the one every worker puts it in),
    not in the one Optuna would hash from the trial's number in this process's study.
    """
    from async_consumer._search.pruners import PLACE, Hyperband
    from async_consumer._search.space import Space
    from async_consumer._search.study import OptunaStudy

    budgets = [9, 5, 3]  # a maximum resource of 10: 3 brackets
    k = next(
        k for k in range(2, 50) if _bracket("band", k, budgets) != _bracket("band", 1, budgets)
    )
    study = OptunaStudy(Space.of({"x": "uniform(0, 1)"}), "tpe", "hyperband", name="band")
    study.settle(Hyperband.step, 10)
    seen: list[tuple[int | None, object]] = []
    sampler = study.study.sampler
    sample = sampler.sample_independent

    def spy(in_study: object, trial: object, name: str, distribution: object) -> object:
        seen.append((getattr(in_study, "_bracket_id", None), trial.system_attrs.get(PLACE)))  # type: ignore[attr-defined]
        return sample(in_study, trial, name, distribution)  # type: ignore[arg-type]

    monkeypatch.setattr(sampler, "sample_independent", spy)
    asked = study.ask(k)
    assert asked is not None
    assert seen == [(_bracket("band", k, budgets), k)]
