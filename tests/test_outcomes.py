"""One trial end to end: every outcome class and reason, with real child processes."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Reason, Status, Trial

from .conftest import WRITE_RESULT, ConsumerFactory, RunScript, python, wait_until


@pytest.mark.anyio
async def test_completed(make_consumer: ConsumerFactory) -> None:
    """Exit 0 with a valid results file completes, with the objective and resource usage."""
    outcome = await make_consumer(python(WRITE_RESULT)).run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED
    assert outcome.reason is None
    assert outcome.objective == 1.5
    assert outcome.returncode == 0
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds > 0
    assert outcome.peak_rss_bytes is not None and outcome.peak_rss_bytes > 1_000_000
    assert outcome.started_at is not None and outcome.ended_at is not None
    assert Path(outcome.stdout_path).name == "stdout.log"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ending", "reason", "returncode", "signal_name", "message"),
    [
        ("sys.exit(3)", Reason.EXIT_CODE, 3, None, "exited with code 3"),
        (
            "os.kill(os.getpid(), signal.SIGSEGV)",
            Reason.SIGNAL,
            -signal.SIGSEGV,
            "SIGSEGV",
            "killed by SIGSEGV",
        ),
    ],
    ids=["exit-code", "signal"],
)
async def test_a_failed_script_is_broken_with_its_reason(
    run_script: RunScript,
    ending: str,
    reason: Reason,
    returncode: int,
    signal_name: str | None,
    message: str,
) -> None:
    """
    A non-zero exit is broken with reason exit_code and the code; a script killed by a signal,
    with reason signal and the signal's name; both with the stderr tail.
    """
    outcome = await run_script("import os, signal, sys; sys.stderr.write('boom\\n'); " + ending)
    assert (outcome.status, outcome.reason) == (Status.BROKEN, reason)
    assert (outcome.returncode, outcome.signal) == (returncode, signal_name)
    assert message in outcome.message
    assert outcome.stderr_tail == "boom\n"
    assert Path(outcome.stderr_path).read_text() == "boom\n"


@pytest.mark.anyio
async def test_results_ignored_after_failure(run_script: RunScript) -> None:
    """Valid results written before a non-zero exit are ignored, as in Orion."""
    outcome = await run_script(WRITE_RESULT + "; import sys; sys.exit(1)")
    assert outcome.status is Status.BROKEN
    assert outcome.results == ()


@pytest.mark.anyio
async def test_interrupted_by_exit_code(make_consumer: ConsumerFactory) -> None:
    """Exiting with ORION_INTERRUPT_CODE (130 by default) is interrupted, not broken."""
    consumer = make_consumer(
        python("import os, sys; sys.exit(int(os.environ['ORION_INTERRUPT_CODE']))")
    )
    outcome = await consumer.run(Trial(id="t"))
    assert (outcome.status, outcome.returncode) == (Status.INTERRUPTED, 130)


@pytest.mark.anyio
async def test_custom_interrupt_code(make_consumer: ConsumerFactory) -> None:
    """The interrupt code is configurable and reaches the script."""
    consumer = make_consumer(
        python("import os, sys; sys.exit(int(os.environ['ASYNC_CONSUMER_INTERRUPT_CODE']))"),
        interrupt_code=75,
    )
    outcome = await consumer.run(Trial(id="t"))
    assert (outcome.status, outcome.returncode) == (Status.INTERRUPTED, 75)


@pytest.mark.slow
@pytest.mark.anyio
async def test_timeout(make_consumer: ConsumerFactory) -> None:
    """A script running past its timeout is stopped: broken, reason timeout."""
    consumer = make_consumer(python("import time; time.sleep(60)"), timeout=0.3, grace=0.5)
    with anyio.fail_after(5):
        outcome = await consumer.run(Trial(id="t"))
    assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.TIMEOUT)
    assert outcome.signal == "SIGTERM"


@pytest.mark.slow
@pytest.mark.anyio
async def test_trial_timeout_wins(make_consumer: ConsumerFactory) -> None:
    """A trial's own timeout overrides the consumer's."""
    consumer = make_consumer(python("import time; time.sleep(60)"), timeout=60)
    with anyio.fail_after(5):
        outcome = await consumer.run(Trial(id="t", timeout=0.2))
    assert outcome.reason is Reason.TIMEOUT


@pytest.mark.anyio
async def test_missing_results(make_consumer: ConsumerFactory) -> None:
    """Exit 0 without writing results is broken, reason missing_results."""
    outcome = await make_consumer(python("pass")).run(Trial(id="t"))
    assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.MISSING_RESULTS)
    assert "empty" in outcome.message


@pytest.mark.anyio
async def test_results_file_removed(make_consumer: ConsumerFactory) -> None:
    """A script that deletes its results file is missing_results too."""
    outcome = await make_consumer(
        python("import os; os.remove(os.environ['ORION_RESULTS_PATH'])")
    ).run(Trial(id="t"))
    assert outcome.reason is Reason.MISSING_RESULTS


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "JSON"),
        ('[{"name": "o", "type": "statistic", "value": 1}]', "objective"),
        ('{"objective": NaN}', "objective"),
        ('[{"name": "o", "type": "bad", "value": 1}]', "type"),
    ],
    ids=["not-json", "no-objective", "nan", "unknown-type"],
)
@pytest.mark.anyio
async def test_invalid_results(make_consumer: ConsumerFactory, content: str, expected: str) -> None:
    """Results that are not valid JSON of the contract are broken, reason invalid_results."""
    code = f"import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write({content!r})"
    outcome = await make_consumer(python(code)).run(Trial(id="t"))
    assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.INVALID_RESULTS)
    assert expected in outcome.message


@pytest.mark.anyio
async def test_results_symlink_refused(make_consumer: ConsumerFactory) -> None:
    """A results file replaced by a symlink (to /etc/passwd) is never followed."""
    code = "import os; p = os.environ['ORION_RESULTS_PATH']; os.remove(p); os.symlink('/etc/passwd', p)"
    outcome = await make_consumer(python(code)).run(Trial(id="t"))
    assert outcome.reason is Reason.INVALID_RESULTS
    assert "link" in outcome.message


@pytest.mark.anyio
async def test_results_cap(make_consumer: ConsumerFactory) -> None:
    """A results file over the configured cap is refused without being read."""
    code = "import os; open(os.environ['ORION_RESULTS_PATH'], 'w').write('1' + ' ' * 5000)"
    outcome = await make_consumer(python(code), max_results_bytes=1000).run(Trial(id="t"))
    assert outcome.reason is Reason.INVALID_RESULTS
    assert "1000" in outcome.message


@pytest.mark.anyio
async def test_program_missing(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A program that does not exist is broken, reason not_executable; nothing raises."""
    outcome = await make_consumer([str(tmp_path / "no-such-program")]).run(Trial(id="t"))
    assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.NOT_EXECUTABLE)
    assert "no-such-program" in outcome.message


@pytest.mark.anyio
async def test_program_not_executable(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A script file without the execute bit is broken, reason not_executable."""
    script = tmp_path / "script.py"
    script.write_text("print('hi')\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    outcome = await make_consumer([str(script)]).run(Trial(id="t"))
    assert outcome.reason is Reason.NOT_EXECUTABLE
    assert "Permission denied" in outcome.message


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo_script(tmp_path: Path) -> Path:
    """A script that writes its results, committed in a fresh git repository."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the code version check has nothing to check")
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text(WRITE_RESULT + "\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return script


@pytest.mark.slow
@pytest.mark.anyio
async def test_code_changed_error(make_consumer: ConsumerFactory, repo_script: Path) -> None:
    """With policy error, a trial after the script changed is broken and never started."""
    consumer = make_consumer([sys.executable, str(repo_script)], code_change="error")
    consumer._code.interval = 0.0
    first = await consumer.run(Trial(id="a"))
    assert first.status is Status.COMPLETED
    assert first.code_version is not None
    repo_script.write_text(WRITE_RESULT + "\n# edited\n")
    second = await consumer.run(Trial(id="b"))
    assert (second.status, second.reason) == (Status.BROKEN, Reason.CODE_CHANGED)
    assert second.pid is None
    assert second.code_version != first.code_version


@pytest.mark.slow
@pytest.mark.anyio
async def test_code_changed_warn(
    make_consumer: ConsumerFactory, repo_script: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the default policy, a change is logged and the trial runs."""
    consumer = make_consumer([sys.executable, str(repo_script)])
    consumer._code.interval = 0.0
    await consumer.run(Trial(id="a"))
    repo_script.write_text(WRITE_RESULT + "\n# edited\n")
    second = await consumer.run(Trial(id="b"))
    assert second.status is Status.COMPLETED
    assert "code changed" in caplog.text


@pytest.mark.slow
@pytest.mark.anyio
async def test_cancelled_first_run_leaves_no_false_code_change(
    make_consumer: ConsumerFactory,
    repo_script: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first run cancelled while git is asked does not make the next one a code change."""
    # a git in front of the real one: it says it was asked, then answers only once let go
    shims = tmp_path / "shims"
    shims.mkdir()
    asked, go = tmp_path / "asked", tmp_path / "go"
    real_git = shutil.which("git")
    shim = shims / "git"
    shim.write_text(
        f"#!/bin/sh\ntouch {asked}\nwhile [ ! -e {go} ]; do sleep 0.01; done\n"
        f'exec {real_git} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    consumer = make_consumer([sys.executable, str(repo_script)], code_change="error")
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run, Trial(id="a"))
            await wait_until(asked.exists, "git to be asked")
            scope.cancel()  # cancelled while git is asked, before it answers
    assert scope.cancelled_caught
    go.touch()
    outcome = await consumer.run(Trial(id="b"))
    assert outcome.status is Status.COMPLETED, outcome.message
    assert outcome.code_version is not None


@pytest.mark.anyio
async def test_no_repository_no_check(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A script outside any git repository runs with no version and no error."""
    script = tmp_path / "plain.py"
    script.write_text(WRITE_RESULT + "\n")
    outcome = await make_consumer([sys.executable, str(script)], code_change="error").run(
        Trial(id="t")
    )
    assert outcome.status is Status.COMPLETED
    assert outcome.code_version is None


def test_unknown_placeholder_raises_before_start(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """An unknown placeholder raises ValueError naming it, and no directory is created."""
    consumer = make_consumer([*python(WRITE_RESULT), "{nope}"])

    async def main() -> None:
        await consumer.run(Trial(id="t", params={"x": 1}))

    with pytest.raises(ValueError, match="nope"):
        anyio.run(main)
    assert not (tmp_path / "trials").exists()


@pytest.mark.anyio
async def test_hostile_id_stays_inside_base(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A trial id such as ../../etc cannot place its directory outside the base directory."""
    consumer = make_consumer(python(WRITE_RESULT))
    for trial_id in ["../../etc", "a/b", ".", ".."]:
        outcome = await consumer.run(Trial(id=trial_id))
        assert outcome.status is Status.COMPLETED
        working_dir = Path(outcome.working_dir)
        assert working_dir.parent.parent == tmp_path / "trials"
        assert stat.S_IMODE(working_dir.stat().st_mode) == 0o700
        assert os.environ.get("PWNED") is None


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("timeout", 0, "timeout must be positive"),
        ("grace", -1, "grace must not be negative"),
        ("interrupt_code", 0, "interrupt_code must be an exit code"),
        ("max_concurrency", 0, "max_concurrency must be positive"),
        ("heartbeat_failures", 0, "heartbeat_failures must be 1 or more"),
    ],
    ids=["timeout", "grace", "interrupt-code", "concurrency", "heartbeat-failures"],
)
def test_bad_options_are_named(
    make_consumer: ConsumerFactory, option: str, value: float, message: str
) -> None:
    """A bad option is a ValueError that names it."""
    with pytest.raises(ValueError, match=message):
        make_consumer(python(WRITE_RESULT), **{option: value})
