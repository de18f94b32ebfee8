"""Seeing your trials: the ``trials`` table, JSON outcomes with parameters, ``--maximize``."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from async_consumer import Consumer, Worker
from async_consumer._cli.main import main
from async_consumer._models import Outcome, Status, StoredTrial, Trial, TrialStatus
from async_consumer._ranking import best_trial
from async_consumer._report.build import render_report
from async_consumer.stores import MemoryStore

# objective = (x - 2) ** 2; x = 3 breaks
SCRIPT = (
    "import json, os, sys; x = float(sys.argv[1]); x == 3 and sys.exit(5); "
    "json.dump((x - 2) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def _run(tmp_path: Path, *options: str) -> int:
    """``run`` SCRIPT with ``options``, its store and trials in ``tmp_path``."""
    store = f"sqlite:///{tmp_path}/store.db"
    argv = ["run", "--store", store, "--base-dir", str(tmp_path / "t"), *options]
    return main([*argv, "--", sys.executable, "-c", SCRIPT, "{x}"])


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A store after a run of x = 0..4 (x = 3 broken)."""
    assert _run(tmp_path, "--grid", "x=0,1,2,3,4", "--grid", "opt=adam") == 1
    capsys.readouterr()
    return f"sqlite:///{tmp_path}/store.db"


@pytest.mark.slow
def test_trials_table_sorted_by_objective(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One line a trial, best first; the broken one last; parameters shown."""
    assert main(["trials", "--store", store, "--sort", "objective"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "status", "objective", "attempts", "duration", "params"]
    assert [line.split()[2] for line in lines[1:]] == ["0", "1", "4", "4", "-"]
    assert lines[1].endswith('x=2 opt="adam"')
    assert lines[-1].split()[1] == "broken"


@pytest.mark.slow
def test_trials_json_csv_maximize_and_parameter_sort(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json rows carry params; --csv has a column per parameter; the recorded direction holds."""
    # the run recorded "lower is better": --maximize contradicts it and is refused
    assert main(["trials", "--store", store, "--sort", "objective", "--maximize"]) == 2
    assert "ranks its trials with --minimize" in capsys.readouterr().err
    assert main(["trials", "--store", store, "--sort", "objective", "--reverse", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["objective"] for r in rows] == [None, 4.0, 4.0, 1.0, 0.0]
    assert rows[0]["params"]["opt"] == "adam" and rows[0]["attempts"] == 1
    assert main(["trials", "--store", store, "--csv", "--sort", "x", "--reverse"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["x"] for r in table] == ["4", "3", "2", "1", "0"]
    assert table[1]["status"] == "broken" and table[1]["objective"] == ""
    assert main(["trials", "--store", store, "--sort", "nope"]) == 2
    assert "expected one of added, id" in capsys.readouterr().err


@pytest.mark.slow
def test_json_outcomes_carry_params_and_maximize_picks_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each --json outcome line has its parameters; the summary's best follows --maximize."""
    assert _run(tmp_path, "--grid", "x=0,2", "--json", "--maximize") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["params"]["x"] for line in lines[:2]) == [0, 2]
    assert lines[-1]["summary"]["best"]["params"] == {"x": 0}  # (0 - 2) ** 2 = 4 is highest


@pytest.mark.anyio
async def test_a_worker_knows_a_trial_while_its_outcome_is_shown_and_forgets_it_after(
    tmp_path: Path,
) -> None:
    """
    What ``--json`` gives each outcome's line its parameters from: the trial of a held lease,
    not a copy of every waiting trial's parameters (memory follows concurrency, not the file).
    """
    store = MemoryStore()
    await store.add(Trial(id=f"t{x}", params={"x": x}) for x in (0, 1, 4))
    consumer = Consumer(
        [sys.executable, "-c", SCRIPT, "{x}"],
        base_dir=tmp_path,
        store=store,
        max_concurrency=2,
        code_change="ignore",
    )
    seen: dict[str, object] = {}

    def shown(outcome: Outcome) -> None:
        trial = worker.running_trial(outcome.trial_id)
        seen[outcome.trial_id] = trial.params if trial is not None else None

    worker = Worker(store, consumer, on_outcome=shown)
    await worker.run()
    assert seen == {"t0": {"x": 0}, "t1": {"x": 1}, "t4": {"x": 4}}
    assert [worker.running_trial(f"t{x}") for x in (0, 1, 4)] == [None, None, None]


def _stored(trial_id: str, objective: float, lr: float) -> StoredTrial:
    outcome = Outcome.model_validate(
        {
            "trial_id": trial_id,
            "status": Status.COMPLETED,
            "results": [{"name": "loss", "type": "objective", "value": objective}],
        }
    )
    from datetime import UTC, datetime

    attempt = {
        "number": 1,
        "token": 1,
        "worker": "w",
        "reserved_at": datetime.now(UTC),
        "outcome": outcome,
    }
    return StoredTrial.model_validate(
        {
            "trial": Trial(id=trial_id, params={"lr": lr}),
            "status": TrialStatus.COMPLETED,
            "attempts": [attempt],
        }
    )


def test_library_best_and_report_parameter_view() -> None:
    """best_trial and render_report take maximize; the report plots each parameter."""
    trials = [_stored("a", 0.5, 0.001), _stored("b", 0.9, 0.01), _stored("c", 0.2, 0.1)]
    assert best_trial(trials).id == "c"  # type: ignore[union-attr]
    assert best_trial(trials, maximize=True).id == "b"  # type: ignore[union-attr]
    html = render_report(trials, maximize=True)
    assert 'id="parameters"' in html and 'aria-label="objective against lr"' in html
    parameters = html[html.index('id="parameters"') :]
    assert parameters.count('class="point record"') == 1  # b, the best, in the lr plot
    assert parameters.count('class="point"') == 2
    assert '<div class="num" id="best-objective">0.9</div>' in html
    assert "(higher is better)" in html
