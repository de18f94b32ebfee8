"""Day two with the command line: what an experiment remembers, and cheap mistakes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Trial, Worker
from async_consumer._cli.main import main
from async_consumer._cli.trial_params import trial_id
from async_consumer._experiment import Experiment
from async_consumer._models import TrialStatus
from async_consumer.stores import store_from_url

from .conftest import WRITE_RESULT, run_here, store_here, wait_until_sync

# objective = x, so the highest x is the best when maximising
OBJECTIVE_X = (
    "import json, os, sys; "
    "json.dump(float(sys.argv[1]), open(os.environ['ORION_RESULTS_PATH'], 'w'))"
)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run_maximized(tmp_path: Path, grid: str) -> tuple[str, list[str]]:
    """
    Run ``--maximize`` over the ``grid`` of x (objective = x): the store's URL, and the run's
    arguments without the direction.
    """
    command = ["--grid", grid, "--", sys.executable, "-c", OBJECTIVE_X, "{x}"]
    assert run_here(tmp_path, "--maximize", *command) == 0
    return store_here(tmp_path), command


@pytest.mark.slow
def test_the_direction_is_recorded_with_the_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After run --maximize, every later command ranks the highest objective first, unasked."""
    store, command = _run_maximized(tmp_path, "x=0,1,3,2")
    capsys.readouterr()
    assert main(["status", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["params"] == {"x": 3}
    assert main(["trials", "--store", store, "--sort", "objective", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [row["objective"] for row in rows] == [3.0, 2.0, 1.0, 0.0]
    report = tmp_path / "report.html"
    assert main(["report", "--store", store, "-o", str(report)]) == 0
    assert "higher is better" in report.read_text() and "lower is better" not in report.read_text()
    assert run_here(tmp_path, "--json", *command) == 0  # a second run, no flag: resumed, same rank
    summary = _json_lines(capsys.readouterr().out)[-1]["summary"]
    assert summary["best"]["params"] == {"x": 3}  # type: ignore[index]


@pytest.mark.slow
def test_a_contradicting_direction_is_refused_unless_a_new_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--minimize after --maximize is one line and exit 2; with --new-version it is version 2."""
    store, command = _run_maximized(tmp_path, "x=0,1")
    capsys.readouterr()
    assert run_here(tmp_path, "--minimize", *command) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--new-version" in err
    assert main(["status", "--store", store, "--minimize"]) == 2
    assert "ranks its trials with --maximize" in capsys.readouterr().err
    assert run_here(tmp_path, "--new-version", "--minimize", "--json", *command) == 0
    summary = _json_lines(capsys.readouterr().out)[-1]["summary"]
    assert summary["best"]["params"] == {"x": 0}  # type: ignore[index]
    assert main(["trials", "--store", store, "--sort", "objective", "--json"]) == 0
    assert [row["params"] for row in _json_lines(capsys.readouterr().out)] == [{"x": 0}, {"x": 1}]


def test_a_program_not_found_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the program stops the run in one line, exit 2, before any trial is recorded."""
    assert run_here(tmp_path, "--grid", "x=1,2,3", "--", "nosuchprog-26", "{x}") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: cannot execute 'nosuchprog-26': not found on PATH (nothing was run or recorded)\n"
    )
    assert not (tmp_path / "store.db").exists()
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")  # not executable
    assert run_here(tmp_path, "--grid", "x=1", "--", str(script), "{x}") == 2
    assert "not an executable file" in capsys.readouterr().err


async def _store_of_a_typo(url: str, base_dir: Path) -> None:
    """
    A store as a worker leaves it when it runs a mistyped command unchecked: every trial broken,
    no script ever started.
    """
    typo = ("nosuchprog-26", "{x}")
    async with store_from_url(url) as store:
        await store.add_experiment(Experiment(name="default", command=typo))
        await store.add([Trial(id=trial_id({"x": x}), params={"x": x}) for x in (1, 2)])
        consumer = Consumer(list(typo), base_dir=base_dir)
        async with consumer:
            await Worker(store, consumer).run()
        assert (await store.counts())[TrialStatus.BROKEN] == 2


@pytest.mark.slow
def test_a_corrected_command_replaces_one_that_never_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When no script of an experiment ever started, the fixed command runs, not refused."""
    url = store_here(tmp_path)
    anyio.run(_store_of_a_typo, url, tmp_path / "trials")
    command = ["--grid", "x=1,2", "--", sys.executable, "-c", OBJECTIVE_X, "{x}"]
    assert run_here(tmp_path, *command) == 0
    captured = capsys.readouterr()
    assert "no script of it ever started, so its command is now" in captured.err
    assert "2 trials: 2 completed" in captured.out
    changed = ["--grid", "x=1,2", "--", sys.executable, "-c", OBJECTIVE_X + " ", "{x}"]
    assert run_here(tmp_path, *changed) == 2  # scripts have run now: a change is refused again
    assert "ran another command" in capsys.readouterr().err


@pytest.mark.slow
def test_rerun_after_the_double_dash_is_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rerun broken put after -- is named as misplaced, not called a changed command."""
    breaks = "import sys; sys.argv[1] == '1' and sys.exit(3); " + OBJECTIVE_X
    command = ["--grid", "x=0,1", "--", sys.executable, "-c", breaks, "{x}"]
    assert run_here(tmp_path, *command) == 1
    advice = capsys.readouterr().err
    assert "--rerun broken placed before its -- (an option of run, not of the script)" in advice
    assert run_here(tmp_path, *command, "--rerun", "broken") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "'--rerun broken' came after --, so it went to the script's command" in err
    assert "ran another command" not in err
    assert run_here(tmp_path, "--rerun", "broken", *command) == 1  # where it belongs: it runs
    assert "running again: 1 trial (their earlier attempts are kept)" in capsys.readouterr().err


@pytest.mark.slow
def test_every_command_counts_the_current_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, report and trials show version 2 alone; --all-versions shows both, versioned."""
    store = store_here(tmp_path)
    grid = ["--grid", "x=1,2,3", "--", sys.executable, "-c", OBJECTIVE_X, "{x}"]
    assert run_here(tmp_path, *grid) == 0
    assert run_here(tmp_path, "--new-version", *grid, "--epochs=2") == 0
    capsys.readouterr()
    assert main(["status", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"completed": 3}
    assert main(["status", "--store", store, "--all-versions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"completed": 6}
    assert main(["report", "--store", store, "-o", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().err == (
        f"wrote {tmp_path / 'r.html'} (3 trials)\n"
        "3 trials of other versions or experiments not shown (--all-versions shows them)\n"
    )
    assert main(["trials", "--store", store, "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 3
    assert main(["trials", "--store", store, "--all-versions", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert sorted(row["version"] for row in rows) == [1, 1, 1, 2, 2, 2]  # type: ignore[type-var]
    assert main(["trials", "--store", store, "--all-versions"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["id", "version", "status"]


@pytest.mark.slow
@pytest.mark.parametrize("limit", [1, 2], ids=["max-broken-1", "max-broken-2"])
def test_max_broken_stops_at_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: int
) -> None:
    """With -j 1, --max-broken N breaks exactly N trials, and the advice names the limit."""
    argv = ["-j", "1", "--max-broken", str(limit), "--grid", "x=1,2,3,4,5"]
    assert run_here(tmp_path, *argv, "--", sys.executable, "-c", "raise SystemExit(3)", "{x}") == 1
    captured = capsys.readouterr()
    assert captured.out.count(" broken ") == limit
    assert f"5 trials: {limit} broken, {5 - limit} new" in captured.out
    broke = "1 trial broke" if limit == 1 else f"{limit} trials broke"
    assert f"{5 - limit} trials not run: --max-broken {limit} stopped the run after {broke}" in (
        captured.err
    )


def _command_line(*args: str) -> list[str]:
    return [sys.executable, "-m", "async_consumer._cli", *args]


@pytest.mark.slow
def test_a_store_never_reached_fails_fast_in_one_line(tmp_path: Path) -> None:
    """A PostgreSQL port nobody listens on: exit 1 with one line, not after the outage limit."""
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/test"
        argv = ["run", "--store", url, "--base-dir", str(tmp_path), "--grid", "x=1"]
        done = subprocess.run(
            _command_line(*argv, "--", sys.executable, "-c", "pass", "{x}"),
            capture_output=True,
            text=True,
            timeout=120,  # only ends a failing test: the outage limit is 300 s
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("error: the store was never reached (tried for 5 s): ")
    assert done.stderr.count("\n") == 1


@pytest.mark.slow
def test_ctrl_c_while_reaching_the_store_is_one_line(tmp_path: Path) -> None:
    """SIGINT while the command waits for a store that never answers: one line, exit 130."""
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"
        argv = ["run", "--store", url, "--base-dir", str(tmp_path), "--grid", "x=1"]
        command = _command_line(*argv, "--", sys.executable, "-c", "pass", "{x}")
        with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
            silent.settimeout(60)
            connection, _ = silent.accept()  # the command now waits for the server's answer
            with connection:
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err == "interrupted\n"


# objective x and a statistic acc = x / 10; x = 2 breaks until the file argv[2] exists
REPORTS_ACC = """
import json, os, sys
x = float(sys.argv[1])
if x == 2 and not os.path.exists(sys.argv[2]):
    sys.exit("lr too high")
json.dump({"objective": x, "acc": x / 10}, open(os.environ["ORION_RESULTS_PATH"], "w"))
"""


@pytest.fixture
def acc_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """A store after a run of x = 1, 2, 3 (2 broken); and the run's stdout."""
    fixed = tmp_path / "fixed"
    argv = ["--grid", "x=1,2,3", "--", sys.executable, "-c", REPORTS_ACC, "{x}", str(fixed)]
    assert run_here(tmp_path, *argv) == 1
    out = capsys.readouterr().out
    return store_here(tmp_path), out


@pytest.mark.slow
def test_per_trial_lines_name_the_parameters(acc_store: tuple[str, str]) -> None:
    """Each trial's line on the terminal says which parameters it ran with."""
    _, out = acc_store
    broken = [line for line in out.splitlines() if line.startswith("!! ")]
    assert len(broken) == 1 and "  x=2  exit_code: exited with code 1 | lr too high" in broken[0]
    assert sum(line.startswith("ok ") and "  x=3  objective=3" in line for line in out.splitlines())


def test_long_parameters_are_cut_to_fit() -> None:
    """Parameters longer than a line's share end in ... instead of pushing the detail away."""
    from async_consumer._cli.view import _line
    from async_consumer._models import Outcome, Status

    outcome = Outcome(trial_id="t", status=Status.BROKEN, reason="exit_code", message="boom")
    line = _line(outcome, {"name": "x" * 200})
    assert 'name="xxx' in line and '..."' not in line and "...  exit_code: boom" in line


@pytest.mark.slow
def test_show_tells_the_objective_results_argv_and_duration(
    acc_store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """show ID in text has what --json has: objective, other results, argv, each duration."""
    store, _ = acc_store
    assert main(["show", "--store", store, trial_id({"x": 3})]) == 0
    out = capsys.readouterr().out
    assert "\nobjective: 3\n" in out and "\nresults: acc=0.3\n" in out
    assert f"\nargv: {sys.executable} -c " in out
    assert re.search(r"attempt 1 on .* \(\d+\.\d\ds\): completed", out), out


@pytest.mark.slow
def test_statistics_show_in_trials_csv_and_report(
    tmp_path: Path, acc_store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A statistic the script reported is in trials (text, JSON, CSV) and in the report."""
    store, _ = acc_store
    assert main(["trials", "--store", store, "--sort", "objective"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "id",
        "status",
        "objective",
        "attempts",
        "duration",
        "results",
        "params",
    ]
    assert lines[1].split()[5] == "acc=0.1"
    assert main(["trials", "--store", store, "--sort", "objective", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [row["results"] for row in rows] == [{"acc": 0.1}, {"acc": 0.3}, {}]
    assert main(["trials", "--store", store, "--sort", "objective", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["acc"] for row in table] == ["0.1", "0.3", ""]
    assert main(["report", "--store", store, "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "acc: 0.1" in html  # the best trial's card
    assert "x=3 · acc=0.3" in html  # a point of the objective's chart


@pytest.mark.slow
def test_the_failure_table_says_a_trial_completed_later(
    tmp_path: Path, acc_store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed attempt whose trial completed on a rerun is marked so in the report."""
    store, _ = acc_store
    (tmp_path / "fixed").touch()
    argv = ["--grid", "x=1,2,3", "--", sys.executable, "-c", REPORTS_ACC, "{x}"]
    assert run_here(tmp_path, "--rerun", "broken", *argv, str(tmp_path / "fixed")) == 0
    assert main(["report", "--store", store, "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.count("completed later (attempt 2)") == 1


@pytest.mark.slow
def test_logs_tail_gives_the_last_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """logs --tail N prints the last N lines of the log, and nothing before them."""
    lines = "import sys; sys.stdout.write(''.join('line %d\\n' % i for i in range(100000))); "
    assert (
        run_here(tmp_path, "--grid", "x=1", "--", sys.executable, "-c", lines + OBJECTIVE_X, "{x}")
        == 0
    )
    capsys.readouterr()
    store = store_here(tmp_path)
    assert main(["logs", "--store", store, trial_id({"x": 1}), "--tail", "3"]) == 0
    assert capsys.readouterr().out == "line 99997\nline 99998\nline 99999\n"
    assert main(["logs", "--store", store, trial_id({"x": 1}), "--tail", "0"]) == 0
    assert capsys.readouterr().out == ""


# prints "first", waits for the file argv[2], prints "second"
WAITS = """
import json, os, sys, time
print("first", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
print("second", flush=True)
json.dump(1.0, open(os.environ["ORION_RESULTS_PATH"], "w"))
"""


@pytest.mark.slow
def test_logs_follow_prints_a_running_trials_output_until_it_ends(tmp_path: Path) -> None:
    """logs --follow shows what a running attempt wrote, then what it appends, and ends with it."""
    go = tmp_path / "go"
    run = _command_line("run", "--grid", "x=1", "--", sys.executable, "-c", WAITS, "{x}", str(go))
    log = tmp_path / ".async-consumer/trials/default" / trial_id({"x": 1}) / "attempts/1/stdout.log"
    with subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.DEVNULL) as running:
        try:
            wait_until_sync(
                lambda: log.is_file() and "first" in log.read_text(), "the trial's first line"
            )
            follow = _command_line("logs", trial_id({"x": 1}), "--follow")
            with subprocess.Popen(follow, cwd=tmp_path, stdout=subprocess.PIPE, text=True) as logs:
                assert logs.stdout is not None
                assert logs.stdout.readline() == "first\n"
                go.touch()
                assert logs.stdout.read() == "second\n"  # to its end: the command left
                assert logs.wait(timeout=60) == 0
        finally:
            go.touch()  # a failing test leaves no run waiting
        assert running.wait(timeout=60) == 0


def test_the_library_writes_nothing_to_stderr_unasked(tmp_path: Path) -> None:
    """A program using the API sees no log line of ours unless it configures logging."""
    program = """
import sys, anyio
from async_consumer import Consumer, Trial
async def main():
    consumer = Consumer([sys.executable, "-c", "raise SystemExit(2)"], base_dir=sys.argv[1])
    print((await consumer.run(Trial(id="t0", params={}))).status)
anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert (done.stdout, done.stderr) == ("broken\n", "")
    configured = "import logging; logging.basicConfig()\n" + program
    done = subprocess.run(
        [sys.executable, "-c", configured, str(tmp_path / "again")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "WARNING:async_consumer:" in done.stderr  # the application's own set-up shows them


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "trials"])
def test_a_reader_that_left_gets_no_error(tmp_path: Path, command: str) -> None:
    """`status | head -4`: a command whose reader has gone leaves quietly (as head's writer)."""
    store = store_here(tmp_path)
    assert main(["add", "--store", store, "--grid", "x=1,2,3"]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line: every write breaks the pipe
    try:
        done = subprocess.run(
            _command_line(command, "--store", store),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == b""
    assert done.returncode == 141


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--maximise"], "unrecognized arguments: --maximise (did you mean --maximize?)"),
        (["run", "--jobs4"], "unrecognized arguments: --jobs4 (did you mean --jobs 4?)"),
        (["status", "--experimnet", "a"], "(did you mean --experiment?)"),
        (["run", "-j", "0"], "argument -j/--jobs: expected a whole number of 1 or more, not '0'"),
    ],
    ids=["maximise", "jobs4", "experimnet", "jobs-zero"],
)
def test_a_usage_error_is_the_error_then_one_usage_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """The error comes first, then the command's one usage line; a misspelt option is guessed."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    first, usage, *rest = capsys.readouterr().err.splitlines()
    assert first.startswith("error: ") and expected in first
    assert usage.startswith(f"usage: async-consumer {argv[0]} [options]") and rest == []


def test_global_flags_work_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-q after the subcommand is taken as before it: no line per trial."""
    argv = ["-q", "--grid", "x=1", "--", sys.executable, "-c", OBJECTIVE_X, "{x}"]
    assert run_here(tmp_path, *argv) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("ok ") for line in out.splitlines())
    assert "1 trial: 1 completed (1 run now)" in out


def test_version_and_small_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints it; an empty params file and a bare path as a store are named."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert re.fullmatch(r"async-consumer \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run_here(tmp_path, "--params", str(empty), "--", "true") == 2
    assert f"no trials: {empty} holds none" in capsys.readouterr().err
    assert main(["run", "--store", "x.db", "--grid", "x=1", "--", "true"]) == 2
    assert "for a SQLite file there, give sqlite:///x.db" in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_says_how_many_are_left_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resumed run whose trials never ran says they are to run, not that all were done."""
    store = store_here(tmp_path)
    grid = ["--grid", "x=1,2,3,4"]
    assert main(["add", "--store", store, *grid]) == 0
    assert "added 4 trials (0 already there)" in capsys.readouterr().err
    assert run_here(tmp_path, *grid, "--", sys.executable, "-c", OBJECTIVE_X, "{x}") == 0
    err = capsys.readouterr().err
    assert "resuming: 4 of 4 trials were already in the store (0 completed, 4 to run)" in err


def test_help_pages_describe_and_show_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command's help has a description with an example."""
    for command in ("run", "add", "worker", "launch", "status", "show", "logs", "report", "trials"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        # argparse wraps at hyphens too ("async-" then "consumer"): compared without spaces
        assert "Example:async-consumer" + command in "".join(text.split()), command


def test_missing_results_names_the_file(tmp_path: Path) -> None:
    """A script that wrote no results is told about results.json, not a literal <file>."""
    from async_consumer import Consumer

    async def run() -> str:
        consumer = Consumer(["true"], base_dir=tmp_path)
        return (await consumer.run(Trial(id="t", params={}))).message

    message = anyio.run(run)
    assert message.startswith("results.json: file is empty") and "<file>" not in message


@pytest.mark.anyio
async def test_a_trial_id_used_again_keeps_the_earlier_attempts_files(tmp_path: Path) -> None:
    """A second program's t0 takes attempt 2: the first program's attempts/1 is left as it was."""
    say = [sys.executable, "-c", "import sys; print(sys.argv[1]); " + WRITE_RESULT, "{word}"]
    first = await Consumer(say, base_dir=tmp_path).run(Trial(id="t0", params={"word": "one"}))
    second = await Consumer(say, base_dir=tmp_path).run(Trial(id="t0", params={"word": "one"}))
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.stdout_path != second.stdout_path
    assert Path(first.stdout_path).read_text() == "one\n"  # not overwritten
    assert Path(second.stdout_path).read_text() == "one\n"


@pytest.mark.anyio
async def test_a_trial_id_used_again_with_other_params_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A trial directory whose earlier attempt ran other parameters gets a warning naming it."""
    command = [sys.executable, "-c", WRITE_RESULT, "{lr}"]
    with caplog.at_level("WARNING", logger="async_consumer"):
        await Consumer(command, base_dir=tmp_path).run(Trial(id="t0", params={"lr": 0.1}))
        await Consumer(command, base_dir=tmp_path).run(Trial(id="t0", params={"lr": 0.1}))
        assert "other parameters" not in caplog.text  # the same trial again: no warning
        await Consumer(command, base_dir=tmp_path).run(Trial(id="t0", params={"lr": 0.2}))
    warned = [r.getMessage() for r in caplog.records if "other parameters" in r.getMessage()]
    assert len(warned) == 1
    assert "holds an earlier trial's files with other parameters (attempt 2:" in warned[0]
    assert '"lr": 0.1' in warned[0]


@pytest.mark.parametrize("flag", ["--maximize", "--minimize"])
def test_launch_passes_the_direction_on_to_its_workers(flag: str) -> None:
    """launch slurm forwards --maximize or --minimize once, as the flag alone."""
    from async_consumer._cli.args import build_parser
    from async_consumer._cli.launch import forwarded

    argv = ["launch", "slurm", "--store", "sqlite:///s.db", "--workers", "2", flag, "--", "t"]
    args = build_parser().parse_args(argv)
    passed = forwarded(args, args.worker_options)
    assert passed.count(flag) == 1 and "True" not in passed and "False" not in passed
