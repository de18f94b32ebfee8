"""``run`` with priors: a search recorded in the store, exactly ``-n`` trials, refused when bad."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from async_consumer._cli.main import main

QUADRATIC = (
    "import json, os, sys; x = float(sys.argv[sys.argv.index('-x') + 1]); "
    "json.dump((x - 2) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def _run(store: Path, *args: str, prior: str = "uniform(-5, 5)") -> int:
    command = ["--", sys.executable, "-c", QUADRATIC, f"-x~{prior}"]
    trials = str(store.parent / "trials")  # the test's own: never the shared default
    return main(
        [
            "-q",
            "run",
            "--store",
            f"sqlite:///{store}",
            "--base-dir",
            trials,
            "--sampler",
            "random",
            *args,
            *command,
        ]
    )


def _params(store: Path) -> dict[str, tuple[dict[str, Any], str]]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT id, trial, status FROM trials ORDER BY seq").fetchall()
    conn.close()
    return {tid: (json.loads(trial)["params"], status) for tid, trial, status in rows}


@pytest.mark.slow
def test_search_runs_exactly_n_trials(tmp_path: Path) -> None:
    """``run -n 6 -j 3`` suggests and runs six trials, all completed, then exits 0."""
    store = tmp_path / "s.db"
    assert _run(store, "-n", "6", "-j", "3", "--seed", "1") == 0
    trials = _params(store)
    assert sorted(trials) == sorted(f"default-{k}" for k in range(1, 7))
    assert all(status == "completed" for _, status in trials.values())
    assert all(-5 <= params["x"] <= 5 for params, _ in trials.values())


@pytest.mark.slow
def test_seeded_search_is_reproducible(tmp_path: Path) -> None:
    """Two searches with the same seed try the same parameters; a resumed one adds nothing."""
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    assert _run(first, "-n", "4", "--seed", "3") == 0
    assert _run(second, "-n", "4", "--seed", "3") == 0
    assert _params(first) == _params(second)
    assert _run(first, "-n", "4", "--seed", "3") == 0  # resumed: already complete
    assert len(_params(first)) == 4


@pytest.mark.slow
def test_a_later_run_keeps_the_recorded_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A second ``run`` of a search that gives only its command keeps the recorded sampler, seed
    and total; ``-n`` alone extends the search and is recorded; a changed seed is refused.
    """
    store, fresh = tmp_path / "s.db", tmp_path / "fresh.db"
    url = f"sqlite:///{store}"
    command = ["--", sys.executable, "-c", QUADRATIC, "-x~uniform(-5, 5)"]
    later = ["-q", "run", "--store", url, "--base-dir", str(tmp_path / "trials")]
    assert _run(store, "-n", "4", "--seed", "3") == 0
    assert main([*later, "-n", "6", *command]) == 0  # the sampler and seed are the recorded ones
    assert _run(fresh, "-n", "6", "--seed", "3") == 0
    assert _params(store) == _params(fresh)  # the same seeded draws: the seed was kept
    assert main([*later, *command]) == 0  # no -n: the recorded total, 6, not the default
    assert len(_params(store)) == 6
    capsys.readouterr()
    assert main(["status", "--store", url]) == 0
    assert "search: 6 of 6 trials suggested (sampler random" in capsys.readouterr().out
    assert main([*later, "--seed", "4", *command]) == 2
    assert "the seed was 3, now 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        ("loguniform(0, 1)", "error: x: loguniform needs 0 < low < high, got low=0, high=1"),
        ("beta(1, 2)", "error: x: unknown prior 'beta'"),
        ("uniform(__import__('os').getcwd(), 1)", "error: x: only literal arguments are accepted"),
    ],
    ids=["impossible-bounds", "unknown-prior", "not-literal"],
)
def test_bad_prior_exits_2_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prior: str, message: str
) -> None:
    """A bad prior: one line naming it, exit 2, and no store is even created."""
    store = tmp_path / "s.db"
    assert _run(store, "-n", "3", prior=prior) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert not store.exists()


def test_search_options_need_a_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-n`` with no prior anywhere is a usage error naming what is missing."""
    store = f"sqlite:///{tmp_path}/s.db"
    assert main(["run", "-n", "3", "--store", store, "--", sys.executable, "-c", "pass"]) == 2
    assert "-n needs a search space" in capsys.readouterr().err


def test_unknown_sampler_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown sampler: one line listing the known ones, exit 2."""
    store = tmp_path / "s.db"
    assert _run(store, "--sampler", "anneal") == 2
    assert (
        "unknown sampler 'anneal' (known: random, tpe, cmaes, gp, qmc, grid)"
        in capsys.readouterr().err
    )
    assert not store.exists()


@pytest.mark.slow
def test_another_space_is_refused_unless_new_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run with another space file is refused like a changed command; --new-version starts v2."""
    store = tmp_path / "s.db"
    space = tmp_path / "space.yaml"
    space.write_text("y: uniform(0, 1)\n")
    assert _run(store, "-n", "2", "--space", str(space)) == 0
    space.write_text("y: uniform(0, 2)\n")
    assert _run(store, "-n", "2", "--space", str(space)) == 2
    assert "the search space changed" in capsys.readouterr().err
    assert _run(store, "-n", "2", "--space", str(space), "--new-version") == 0
    trials = _params(store)
    assert {"default-1-v2", "default-2-v2"} <= set(trials)
    assert all(0 <= params["y"] <= 2 for tid, (params, _) in trials.items() if tid.endswith("-v2"))


@pytest.mark.slow
def test_config_template_priors_are_filled_per_trial(tmp_path: Path) -> None:
    """``'orion~...'`` in a YAML config template: each trial's config holds a drawn value."""
    template = tmp_path / "config.yaml"
    template.write_text("model:\n  width: 'orion~choices([64, 128])'\n  depth: 3\n")
    read = (
        "import json, os, sys, yaml; c = yaml.safe_load(open(sys.argv[1])); "
        "assert c['model']['depth'] == 3; "
        "json.dump(c['model']['width'], open(os.environ['ORION_RESULTS_PATH'], 'w'))"
    )
    store = tmp_path / "s.db"
    args = ["-q", "run", "--store", f"sqlite:///{store}", "--sampler", "random", "-n", "3"]
    args += ["--base-dir", str(tmp_path / "trials")]  # the test's own: never the shared default
    args += ["--config-template", str(template), "--", sys.executable, "-c", read, "{config_file}"]
    assert main(args) == 0
    trials = _params(store)
    assert len(trials) == 3
    assert all(params["model.width"] in (64, 128) for params, _ in trials.values())


@pytest.mark.parametrize("before", ["nothing", "a list of trials"])
def test_a_worker_with_priors_and_no_search_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: str
) -> None:
    """A worker given priors before any search was started: one line saying to ``run`` it first."""
    store = tmp_path / "s.db"
    if before == "a list of trials":
        assert main(["-q", "add", "--store", f"sqlite:///{store}", "--grid", "x=1"]) == 0
    command = ["--", sys.executable, "-c", QUADRATIC, "-x~uniform(-5, 5)"]
    assert main(["worker", "--store", f"sqlite:///{store}", *command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: experiment 'default' has no search in this store: "), err
    assert "start it with `async-consumer run -n N --store URL --experiment default" in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_status_of_a_search_beside_another_experiment_counts_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Two searches in one store: the second run's summary and ``status --experiment`` count one
    search's trials, not the store's.
    """
    store = tmp_path / "s.db"
    assert _run(store, "-n", "3", "--seed", "1", "--experiment", "wide") == 0
    assert _run(store, "-n", "2", "--seed", "1", "--experiment", "near", prior="uniform(1, 3)") == 0
    out = capsys.readouterr().out.splitlines()
    summary = [line for line in out if " trials: " in line]
    assert summary[-1].startswith("2 trials: 2 completed"), summary
    assert [line for line in out if line.startswith("best:")][-1].startswith("best: near-")
    for experiment, n in (("wide", 3), ("near", 2)):
        assert (
            main(["status", "--store", f"sqlite:///{store}", "--experiment", experiment, "--json"])
            == 0
        )
        state = json.loads(capsys.readouterr().out)
        assert state["counts"] == {"completed": n}
        assert state["search"] == {"n": n, "suggested": n}
        assert state["best"]["trial_id"].startswith(f"{experiment}-")
