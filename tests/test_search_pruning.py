"""Pruning from live metrics: 20 trials with known curves, the hopeless ones stopped at step 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Metric, Reason, Status, Trial, TrialStatus
from async_consumer._cli.main import main
from async_consumer._cli.view import _line
from async_consumer._search.optimize import optimize
from async_consumer._search.samplers import RandomSampler
from async_consumer._search.space import Space
from async_consumer.stores import store_from_url

from .conftest import LOSS_CURVE

optuna = pytest.importorskip("optuna")

# a good trial reports loss 1/(step+1) for 5 steps and completes; a hopeless one (-h 1)
# reports 10 more at each step, then waits to be stopped (it never ends on its own)
CURVES = (
    (
        """
import json, os, sys, time
hopeless = int(sys.argv[sys.argv.index('-h') + 1])
"""
        + LOSS_CURVE
    )
    .replace("{", "{{")
    .replace("}", "}}")
)

# 5 good first (the median pruner's startup), then hopeless and good alternating
PLAN = [0] * 5 + [1, 0] * 7 + [1]


@pytest.mark.slow
def test_optimize_prunes_the_hopeless_trials_of_a_study(tmp_path: Path) -> None:
    """``optimize``: each hopeless trial is stopped at step 0, and the study records it PRUNED."""
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    for hopeless in PLAN:
        study.enqueue_trial({"h": hopeless})
    consumer = Consumer(
        [sys.executable, "-c", CURVES, "-h", "{h}"], base_dir=tmp_path, max_concurrency=1, grace=2
    )
    outcomes = anyio.run(
        lambda: optimize(study, consumer, len(PLAN), space={"h": "choices([0, 1])"}, metric="loss")
    )
    by_id = {o.trial_id: o for o in outcomes}
    for trial in study.trials:
        outcome = by_id[f"{study.study_name}-{trial.number}"]
        if trial.params["h"]:
            assert trial.state is optuna.trial.TrialState.PRUNED
            assert (outcome.status, outcome.reason) == (Status.INTERRUPTED, Reason.PRUNED)
            assert outcome.message.startswith("pruned at step 0:")
            assert list(trial.intermediate_values) == [0]
        else:
            assert trial.state is optuna.trial.TrialState.COMPLETE
            assert outcome.status is Status.COMPLETED
    assert len(outcomes) == len(PLAN) == len(study.trials)


@pytest.mark.slow
@pytest.mark.parametrize(("step", "shown"), [(1, "10.5"), (2, "10.3333")])
def test_a_callback_answering_true_stops_its_trial(tmp_path: Path, step: int, shown: str) -> None:
    """
    A trial's own metrics callback answers True at a step: the trial ends pruned there, its
    message giving the value as ``%g`` does; a run's line shows it once, not ``pruned: pruned``.
    """

    def stop_there(line: Metric) -> bool:
        return line.step == step

    consumer = Consumer([sys.executable, "-c", CURVES, "-h", "1"], base_dir=tmp_path, grace=2)
    outcome = anyio.run(lambda: consumer.run(Trial(id="t"), on_metric=stop_there))
    assert (outcome.status, outcome.reason) == (Status.INTERRUPTED, Reason.PRUNED)
    assert outcome.message == f"pruned at step {step}: loss={shown}"
    line = _line(outcome, {"h": 1})
    assert line.endswith(f"h=1  pruned at step {step}: loss={shown}"), line


def _seed_with_good_startup() -> int:
    """A seed whose first 5 trials are good and whose 20 hold at least 5 hopeless ones."""
    sampler_space = Space.of({"h": "choices([0, 1])"})
    for seed in range(1000):
        plan = [RandomSampler(sampler_space, seed).ask(k)["h"] for k in range(1, 21)]
        if not any(plan[:5]) and sum(plan) >= 5:  # type: ignore[arg-type]
            return seed
    raise AssertionError


@pytest.mark.slow
def test_run_prunes_from_live_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``run --pruner median``: hopeless trials end pruned, never re-run; status counts them."""
    seed = _seed_with_good_startup()
    plan = [
        RandomSampler(Space.of({"h": "choices([0, 1])"}), seed).ask(k)["h"] for k in range(1, 21)
    ]
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["-q", "run", "-n", "20", "-j", "1", "--sampler", "random", "--seed", str(seed)]
    args += ["--pruner", "median", "--metric", "loss", "--grace", "2", "--store", url]
    args += [
        "--base-dir",
        str(tmp_path / "trials"),
        "--",
        sys.executable,
        "-c",
        CURVES,
        "-h~choices([0, 1])",
    ]
    assert main(args) == 0  # a pruned trial is the search's decision, not a failure

    async def read() -> list[tuple[str, TrialStatus, int, str]]:
        async with store_from_url(url) as store:
            stored = await store.list()
        return [
            (t.id, t.status, len(t.attempts), t.outcome.message if t.outcome else "")
            for t in stored
        ]

    trials = anyio.run(read)
    assert len(trials) == 20
    for (tid, status, attempts, message), hopeless in zip(
        sorted(trials, key=lambda t: int(t[0].split("-")[1])), plan, strict=True
    ):
        assert attempts == 1, tid  # never run again
        if hopeless:
            assert status is TrialStatus.PRUNED
            assert message.startswith("pruned at step 0:")
        else:
            assert status is TrialStatus.COMPLETED
    capsys.readouterr()
    assert main(["status", "--store", url, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["pruned"] == sum(plan)  # type: ignore[arg-type]
    assert counts["completed"] == 20 - sum(plan)  # type: ignore[arg-type]
    assert main(["trials", "--store", url, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(row["status"] == "pruned" for row in rows) == sum(plan)  # type: ignore[arg-type]
    page = tmp_path / "report.html"
    assert main(["report", "--store", url, "-o", str(page)]) == 0
    card = f'data-status="pruned" style="--c:#8e6bbf"><div class="num">{sum(plan)}</div>'  # type: ignore[arg-type]
    assert card in page.read_text()
