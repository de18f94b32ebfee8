"""The command line, through ``main([...])`` and once through the installed entry point."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from async_consumer._cli.main import main

from .conftest import WRITE_RESULT, installed, python, run_here

QUADRATIC = "import json, os, sys; x = float(sys.argv[1]); json.dump((x - 2) ** 2, open(os.environ['ORION_RESULTS_PATH'], 'w'))"


@pytest.fixture
def params(tmp_path: Path) -> Path:
    """Four trials in a JSONL file."""
    path = tmp_path / "params.jsonl"
    path.write_text("".join(json.dumps({"x": x}) + "\n" for x in (0, 1, 2, 3)))
    return path


def test_run_all_completed(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run where every trial completes exits 0, prints a line per trial and the best one."""
    code = run_here(
        tmp_path, "--params", str(params), "-j", "2", "--", sys.executable, "-c", QUADRATIC, "{x}"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count(" completed   ") == 4
    assert "4 trials: 4 completed" in out
    assert "objective=0  x=2" in out


def test_run_resumes(tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Running the same command again runs nothing that completed."""
    argv = ["--params", str(params), "--", sys.executable, "-c", QUADRATIC, "{x}"]
    assert run_here(tmp_path, *argv) == 0
    capsys.readouterr()
    assert run_here(tmp_path, *argv) == 0
    captured = capsys.readouterr()
    assert "(0 run now)" in captured.out
    assert "resuming: 4 of 4" in captured.err


def test_run_with_failures_exits_1(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One broken trial makes the exit status 1; the others still run."""
    code = "import sys\nif sys.argv[1] == '1': sys.exit(4)\n" + WRITE_RESULT
    assert run_here(tmp_path, "--params", str(params), "--", sys.executable, "-c", code, "{x}") == 1
    out = capsys.readouterr().out
    assert "exited with code 4" in out
    assert "3 completed" in out


def test_grid_and_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--grid makes every combination; --json prints one object a line."""
    argv = [
        "--grid",
        "x=1,2",
        "--grid",
        "y=a,b",
        "--json",
        "--",
        sys.executable,
        "-c",
        WRITE_RESULT,
        "{x}{y}",
    ]
    assert run_here(tmp_path, *argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    outcomes = [line for line in lines if "trial_id" in line]
    assert sorted(o["argv"][-1] for o in outcomes) == ["1a", "1b", "2a", "2b"]
    assert lines[-1]["summary"]["counts"] == {"completed": 4}


def test_csv_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV file with a header gives one trial a row, numbers typed."""
    path = tmp_path / "p.csv"
    path.write_text("x,name\n2,a\n3,b\n")
    assert (
        run_here(tmp_path, "--params", str(path), "--", sys.executable, "-c", QUADRATIC, "{x}") == 0
    )
    assert "objective=0  x=2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--params", "missing.jsonl", "--", "true"], "missing.jsonl: cannot read"),
        (["--params", "{bad}", "--", "true"], ":2: not JSON"),
        (["--params", "{good}", "--", "prog", "{nope}"], "unknown placeholder {nope}"),
        (["--params", "{good}", "-j", "0", "--", "prog"], "-j/--jobs: expected a whole number"),
        (["--params", "{good}"], "no command"),
        (["--", "prog"], "no trials"),
        (["--params", "{good}", "--slots-per-trial", "gpu=1", "--", "prog"], "gpu"),
    ],
    ids=[
        "missing-file",
        "malformed-line",
        "unknown-placeholder",
        "jobs-zero",
        "no-command",
        "no-trials",
        "slot-demand",
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad input gives one clear line on stderr and exit status 2, and runs nothing."""
    good = tmp_path / "good.jsonl"
    good.write_text('{"x": 1}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n{"x": \n')
    argv = [a.replace("{good}", str(good)).replace("{bad}", str(bad)) for a in argv]
    if "-j" in argv:  # argparse's own check: usage, the error line, status 2
        with pytest.raises(SystemExit) as exit_info:
            run_here(tmp_path, *argv)
        assert exit_info.value.code == 2
    else:
        assert run_here(tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "trials").exists()


def test_bad_input_keeps_what_is_recorded(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed file on a second run changes nothing already in the store."""
    assert (
        run_here(tmp_path, "--params", str(params), "--", sys.executable, "-c", QUADRATIC, "{x}")
        == 0
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 9}\nnot json\n')
    assert (
        run_here(tmp_path, "--params", str(bad), "--", sys.executable, "-c", QUADRATIC, "{x}") == 2
    )
    capsys.readouterr()
    assert main(["status", "--store", f"sqlite:///{tmp_path}/store.db", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"completed": 4}


def test_status_shows_the_best_trial_so_far(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status names the best completed trial: the lowest objective, as the run recorded."""
    store = f"sqlite:///{tmp_path}/store.db"
    assert main(["add", "--store", store, "--params", str(params)]) == 0
    assert main(["status", "--store", store, "--json"]) == 0  # nothing completed: no best
    assert json.loads(capsys.readouterr().out)["best"] is None
    assert (
        run_here(tmp_path, "--params", str(params), "--", sys.executable, "-c", QUADRATIC, "{x}")
        == 0
    )
    capsys.readouterr()
    assert main(["status", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "completed          4" in out
    assert re.search(r"^best: \w+ objective=0  x=2$", out, re.MULTILINE), out
    # the run recorded "lower is better": a contradicting flag is refused, in one line
    assert main(["status", "--store", store, "--json", "--maximize"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_add_worker_status_show(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """add queues trials, worker runs them, status counts them, show tells one trial's story."""
    store = f"sqlite:///{tmp_path}/shared.db"
    assert main(["add", "--store", store, "--params", str(params)]) == 0
    assert "added 4 trials" in capsys.readouterr().err
    assert main(["status", "--store", store]) == 0
    assert "new                4" in capsys.readouterr().out
    code = "import sys; print('hello from', sys.argv[1])\n" + WRITE_RESULT
    argv = ["worker", "--store", store, "-j", "2", "--base-dir", str(tmp_path / "t")]
    assert main([*argv, "--", *python(code), "{x}"]) == 0
    out = capsys.readouterr().out
    trial_id = out.split()[1]
    assert main(["show", "--store", store, trial_id]) == 0
    shown = capsys.readouterr().out
    assert f"trial {trial_id}: completed" in shown
    assert "attempt 1 on" in shown
    assert "hello from" in shown
    assert main(["show", "--store", store, "no-such-id"]) == 2  # bad input
    assert "no trial with an id starting with 'no-such-id'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_waiting_trial_the_command_cannot_run_is_refused_before_any_starts(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A store's other waiting trial lacking a parameter of the command: exit 2, nothing run."""
    store = f"sqlite:///{tmp_path}/shared.db"
    other = tmp_path / "other.jsonl"
    other.write_text('{"y": 1}\n')
    assert main(["add", "--store", store, "--params", str(other)]) == 0
    given = ["--params", str(params)] if command == "run" else []
    argv = [command, "--store", store, *given, "--base-dir", str(tmp_path / "t")]
    capsys.readouterr()
    assert main([*argv, "--", *python(QUADRATIC), "{x}"]) == 2
    assert "unknown placeholder {x}" in capsys.readouterr().err
    assert not any((tmp_path / "t").iterdir())  # no trial's directory: none started
    assert main(["status", "--store", store]) == 0
    assert f"new                {5 if command == 'run' else 1}" in capsys.readouterr().out


@pytest.mark.slow
def test_installed_entry_point(tmp_path: Path, params: Path) -> None:
    """The installed `async-consumer` command runs a job end to end."""
    store = f"sqlite:///{tmp_path}/s.db"
    argv = ["--params", str(params), "--store", store, "--base-dir", str(tmp_path / "t")]
    result = installed("run", *argv, "--", *python(QUADRATIC), "{x}")
    assert result.returncode == 0, result.stderr
    assert "4 trials: 4 completed" in result.stdout
    help_text = installed("run", "--help").stdout
    assert "--params" in help_text and "--jobs" in help_text


def test_logs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`logs` prints a trial's stdout or stderr log; an unknown trial is an error."""
    code = "import sys; print('to out'); print('to err', file=sys.stderr)\n" + WRITE_RESULT
    assert run_here(tmp_path, "--grid", "x=1", "--", sys.executable, "-c", code) == 0
    trial_id = capsys.readouterr().out.split()[1]
    store = f"sqlite:///{tmp_path}/store.db"
    assert main(["logs", "--store", store, trial_id]) == 0
    assert capsys.readouterr().out == "to out\n"
    assert main(["logs", "--store", store, trial_id, "--stderr"]) == 0
    assert capsys.readouterr().out == "to err\n"
    assert main(["logs", "--store", store, trial_id, "--attempt", "2"]) == 2
    assert "no finished attempt number 2" in capsys.readouterr().err


def test_run_retries_through_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--retries re-runs a trial killed by a signal as a new attempt, recorded in the store."""
    code = (
        "import os, signal\n"
        "if os.environ['ASYNC_CONSUMER_ATTEMPT'] == '1': os.kill(os.getpid(), signal.SIGKILL)\n"
        + WRITE_RESULT
    )
    assert (
        run_here(tmp_path, "--grid", "x=1", "--retries", "2", "--", sys.executable, "-c", code) == 0
    )
    out = capsys.readouterr().out
    assert "#1 broken" in out
    assert "#2 completed" in out
    assert "1 trial: 1 completed" in out


def test_report_command(tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report` writes one self-contained HTML page of the run."""
    assert (
        run_here(tmp_path, "--params", str(params), "--", sys.executable, "-c", QUADRATIC, "{x}")
        == 0
    )
    out = tmp_path / "r.html"
    assert main(["report", "--store", f"sqlite:///{tmp_path}/store.db", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") or page.lower().startswith("<!doctype html>")
    assert "<svg" in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize("command", ["worker", "run", "status"])
def test_a_postgres_store_without_asyncpg_says_what_to_install(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """Without the postgres extra, a postgresql:// store is one line naming it, exit 2."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed
    for name in ("postgres", "_postgres_connection"):
        monkeypatch.delitem(sys.modules, f"async_consumer.stores.{name}", raising=False)
    argv = [command, "--store", "postgresql://nobody@127.0.0.1:1/none"]
    if command == "run":
        argv += ["--grid", "x=1"]
    if command != "status":
        argv += ["--base-dir", str(tmp_path / "trials"), "--", *python(QUADRATIC), "{x}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: postgresql:// stores need asyncpg: pip install 'async-consumer[postgres]'" in err
    assert "Traceback" not in err
