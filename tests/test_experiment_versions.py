"""An experiment knows its command: a changed command is refused; a new version runs again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer._cli.main import main
from async_consumer._experiment import Experiment, differences
from async_consumer.stores import SQLiteStore

from .conftest import run_here

# the objective is the experiment version the script was told, so that tests can see it
VERSIONED = (
    "import json, os, sys; json.dump(float(os.environ['ASYNC_CONSUMER_EXPERIMENT_VERSION']), "
    "open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


async def _trial_count(tmp_path: Path) -> int:
    async with SQLiteStore(tmp_path / "store.db") as store:
        return len(await store.list())


def _command(epochs: str) -> list[str]:
    return ["--", sys.executable, "-c", VERSIONED, "{x}", "--epochs", epochs]


@pytest.mark.slow
def test_a_changed_command_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2, one line naming the difference and both ways on; nothing recorded or run."""
    assert run_here(tmp_path, "--grid", "x=1,2", *_command("2")) == 0
    capsys.readouterr()
    assert run_here(tmp_path, "--grid", "x=1,2", *_command("4")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert "--epochs 2" in lines[0] and "--epochs 4" in lines[0]
    assert "--experiment NAME" in lines[0] and "--new-version" in lines[0]
    assert anyio.run(_trial_count, tmp_path) == 2


@pytest.mark.slow
def test_a_new_version_runs_everything_again_and_keeps_the_old(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--new-version: every trial runs as version 2; summaries cover version 2 only."""
    assert run_here(tmp_path, "--grid", "x=1,2", *_command("2")) == 0
    capsys.readouterr()
    assert run_here(tmp_path, "--new-version", "--grid", "x=1,2", *_command("4")) == 0
    captured = capsys.readouterr()
    assert "version 2: every trial runs again" in captured.err
    assert "2 trials: 2 completed (2 run now)" in captured.out
    assert "objective=2" in captured.out  # the scripts saw ASYNC_CONSUMER_EXPERIMENT_VERSION=2
    assert anyio.run(_trial_count, tmp_path) == 4  # version 1's records are kept
    assert run_here(tmp_path, "--grid", "x=1,2", *_command("4")) == 0  # resumes version 2
    assert "(0 run now)" in capsys.readouterr().out


@pytest.mark.slow
def test_another_experiment_name_is_separate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new --experiment name takes the new command at once."""
    assert run_here(tmp_path, "--grid", "x=1", *_command("2")) == 0
    assert run_here(tmp_path, "--experiment", "long", "--grid", "x=1", *_command("4")) == 0
    assert "1 trial: 1 completed (1 run now)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_changed_config_template_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config template's content is part of the experiment; its layout is not."""
    template = tmp_path / "c.json"
    template.write_text('{"lr": "{lr}", "epochs": 2}')
    command = [
        "--config-template",
        str(template),
        "--grid",
        "lr=0.1",
        "--",
        sys.executable,
        "-c",
        VERSIONED,
    ]
    assert run_here(tmp_path, *command) == 0
    template.write_text('{\n  "epochs": 2,\n  "lr": "{lr}"\n}')  # the same, laid out otherwise
    assert run_here(tmp_path, *command) == 0
    template.write_text('{"lr": "{lr}", "epochs": 3}')
    capsys.readouterr()
    assert run_here(tmp_path, *command) == 2
    assert "config template" in capsys.readouterr().err


def test_differences_name_what_changed() -> None:
    """The library's comparison: command and config, not the code version."""
    old = Experiment(name="e", command=("python", "a.py"), code_version="1")
    assert differences(old, old.model_copy(update={"code_version": "2"})) == []
    changed = differences(old, old.model_copy(update={"command": ("python", "b.py")}))
    assert changed == ["the command was 'python a.py', now 'python b.py'"]


@pytest.mark.slow
def test_trials_shows_the_current_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trials` lists the current version's trials; --all-versions every trial in the store."""
    store = f"sqlite:///{tmp_path}/store.db"
    assert run_here(tmp_path, "--grid", "x=1,2", *_command("2")) == 0
    assert run_here(tmp_path, "--new-version", "--grid", "x=1", *_command("4")) == 0
    capsys.readouterr()
    assert main(["trials", "--store", store, "--json"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["params"], r["objective"]) for r in rows] == [({"x": 1}, 2.0)]
    assert main(["trials", "--store", store]) == 0
    assert "2 trials of other versions or experiments not shown" in capsys.readouterr().err
    assert main(["trials", "--store", store, "--all-versions", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
