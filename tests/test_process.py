"""The script's side of the contract, and what happens to its processes on every exit path."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.lowlevel
import pytest

from async_consumer import Outcome, Reason, Status, Trial
from async_consumer._supervise import supervisor
from async_consumer._supervise.process import ChildProcess, Exit

from .conftest import (
    WRITE_RESULT,
    ConsumerFactory,
    RunScript,
    children_of,
    is_alive,
    python,
    wait_until,
)

HOSTILE = "sp ace 'q\"uote $(touch pwned) `touch pwned2` ; rm -rf x\nnew line ünï ☃"


@pytest.mark.anyio
async def test_value_reaches_script_byte_for_byte(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A hostile parameter value arrives as one argv item, unchanged, and nothing is executed."""
    code = "import sys, json, os; open(os.environ['ORION_WORKING_DIR'] + '/argv.json', 'w').write(json.dumps(sys.argv[1:]))"
    consumer = make_consumer(
        [*python(code + "\n" + WRITE_RESULT), "{v}", "--v={v}"], run_in_working_dir=True
    )
    outcome = await consumer.run(Trial(id="t", params={"v": HOSTILE}))
    assert outcome.status is Status.COMPLETED
    argv = json.loads((Path(outcome.working_dir) / "argv.json").read_text())
    assert argv == [HOSTILE, f"--v={HOSTILE}"]
    created = {p.name for p in Path(outcome.working_dir).iterdir()} | set(os.listdir(tmp_path))
    assert "pwned" not in created and "pwned2" not in created
    assert not Path("pwned").exists()


GRANDCHILD = """
    import os, signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, '-c',
        'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(os.environ['ORION_WORKING_DIR'] + '/pids', 'w').write('%d %d' % (os.getpid(), child.pid))
    time.sleep(120)
"""


def _pids(outcome_dir: Path) -> list[int]:
    return [int(p) for p in (outcome_dir / "pids").read_text().split()]


@pytest.mark.slow
@pytest.mark.anyio
async def test_timeout_kills_grandchildren(make_consumer: ConsumerFactory) -> None:
    """After a timeout, the script and a grandchild that ignore SIGTERM are both gone."""
    # the timeout leaves a loaded machine time to start the script and ignore SIGTERM first
    consumer = make_consumer(python(GRANDCHILD), timeout=5.0, grace=0.3)
    with anyio.fail_after(10):
        outcome = await consumer.run(Trial(id="t"))
    assert outcome.reason is Reason.TIMEOUT
    assert outcome.signal == "SIGKILL"
    pids = _pids(Path(outcome.working_dir))
    assert len(pids) == 2
    assert not any(is_alive(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.anyio
async def test_cancel_kills_grandchildren(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """Cancelling the caller stops the whole group, then the cancellation propagates."""
    consumer = make_consumer(python(GRANDCHILD), grace=0.3)
    pids_file = tmp_path / "trials" / "default" / "t" / "pids"
    outcome: Outcome | None = None
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal outcome
                outcome = await consumer.run(Trial(id="t"))

            tg.start_soon(run)
            await wait_until(
                lambda: pids_file.exists() and len(pids_file.read_text().split()) >= 2,
                "the script's two pids",
            )
            pids = _pids(pids_file.parent)
            assert all(is_alive(pid) for pid in pids)
            tg.cancel_scope.cancel()
    assert outcome is None  # cancelled, not an outcome
    assert not any(is_alive(pid) for pid in pids)
    assert consumer.running == []


@pytest.mark.slow
@pytest.mark.anyio
async def test_large_stdout_is_logged(run_script: RunScript) -> None:
    """10 MB on stdout does not block the script, and the log holds all of it."""
    code = "import sys; sys.stdout.write('x' * 10_000_000); sys.stdout.flush()\n" + WRITE_RESULT
    with anyio.fail_after(20):
        outcome = await run_script(code)
    assert outcome.status is Status.COMPLETED
    assert Path(outcome.stdout_path).stat().st_size == 10_000_000


@pytest.mark.anyio
async def test_stdin_is_empty(run_script: RunScript) -> None:
    """A script that reads stdin gets end of file at once."""
    with anyio.fail_after(10):
        outcome = await run_script("import sys; assert sys.stdin.read() == ''\n" + WRITE_RESULT)
    assert outcome.status is Status.COMPLETED


ENV_DUMP = """
    import json, os
    wd = os.environ['ASYNC_CONSUMER_WORKING_DIR']
    seen = {k: v for k, v in os.environ.items()}
    seen['results_exists_empty'] = str(os.path.getsize(os.environ['ORION_RESULTS_PATH']) == 0)
    seen['cwd'] = os.getcwd()
    seen['params'] = open(os.environ['ASYNC_CONSUMER_PARAMS_PATH']).read()
    open(os.path.join(wd, 'env.json'), 'w').write(json.dumps(seen))
    # exactly what Orion's client library does in report_results
    with open(os.environ['ORION_RESULTS_PATH'], 'w') as f:
        json.dump([{'name': 'loss', 'type': 'objective', 'value': 0.25},
                   {'name': 'g', 'type': 'gradient', 'value': [0.1, 0.2]},
                   {'name': 'acc', 'type': 'statistic', 'value': 0.9}], f)
"""


@pytest.mark.anyio
async def test_environment_contract(
    make_consumer: ConsumerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every documented variable and its Orion alias is set; Orion-style results are read."""
    monkeypatch.setenv("PARENT_VAR", "kept")
    monkeypatch.setenv("SECRET_TOKEN", "hidden")
    consumer = make_consumer(
        python(ENV_DUMP),
        env={"EXTRA": "1"},
        env_deny=["SECRET_*"],
        experiment_id="exp-id",
        experiment_version=4,
    )
    trial = Trial(id="t7", params={"lr": 0.1}, experiment="exp", attempt=2)
    outcome = await consumer.run(trial)
    assert outcome.status is Status.COMPLETED, outcome.message
    assert outcome.objective == 0.25
    assert [r.type for r in outcome.results] == ["objective", "gradient", "statistic"]
    wd = Path(outcome.working_dir)
    env = json.loads((wd / "env.json").read_text())
    own = wd / "attempts" / "2"  # the attempt's own files, inside the trial's working directory
    expected = {
        "TRIAL_ID": "t7",
        "ATTEMPT": "2",
        "WORKING_DIR": str(wd),
        "RESULTS_PATH": str(own / "results.json"),
        "PARAMS_PATH": str(own / "params.json"),
        "METRICS_PATH": str(own / "metrics.jsonl"),
        "INTERRUPT_CODE": "130",
        "EXPERIMENT_NAME": "exp",
        "EXPERIMENT_ID": "exp-id",
        "EXPERIMENT_VERSION": "4",
    }
    for name, value in expected.items():
        assert env["ASYNC_CONSUMER_" + name] == value, name
    orion = [
        "TRIAL_ID",
        "WORKING_DIR",
        "RESULTS_PATH",
        "INTERRUPT_CODE",
        "EXPERIMENT_NAME",
        "EXPERIMENT_ID",
        "EXPERIMENT_VERSION",
    ]
    for name in orion:
        assert env["ORION_" + name] == expected[name], name
    assert env["results_exists_empty"] == "True"
    assert env["cwd"] == os.getcwd()
    assert json.loads(env["params"]) == {"lr": 0.1}
    assert env["PARENT_VAR"] == "kept" and env["EXTRA"] == "1"
    assert "SECRET_TOKEN" not in env
    assert outcome.env["ASYNC_CONSUMER_TRIAL_ID"] == "t7"
    assert Path(outcome.stdout_path) == own / "stdout.log"


@pytest.mark.anyio
async def test_env_allow_list(
    make_consumer: ConsumerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an allow-list, only matching parent variables reach the script (ours always do)."""
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.setenv("DROP_ME", "1")
    code = (
        "import os, sys\nif 'KEEP_ME' not in os.environ or 'DROP_ME' in os.environ: sys.exit(5)\n"
        + WRITE_RESULT
    )
    outcome = await make_consumer(python(code), env_allow=["KEEP_*", "PATH"]).run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED, outcome.message


@pytest.mark.anyio
async def test_run_in_working_dir(make_consumer: ConsumerFactory) -> None:
    """The option runs the script in its trial's directory."""
    code = "import os; assert os.getcwd() == os.environ['ORION_WORKING_DIR']\n" + WRITE_RESULT
    outcome = await make_consumer(python(code), run_in_working_dir=True).run(Trial(id="t"))
    assert outcome.status is Status.COMPLETED, outcome.stderr_tail


@pytest.mark.anyio
async def test_config_file_rendered(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """A config template is rendered in the working directory and named by {config_file}."""
    template = tmp_path / "cfg.json"
    template.write_text('{"lr": "{lr}", "name": "{trial.id}"}')
    code = (
        "import json, sys; c = json.load(open(sys.argv[1])); assert c == {'lr': 0.5, 'name': 't'}, c\n"
        + WRITE_RESULT
    )
    consumer = make_consumer([*python(code), "{config_file}"], config_template=template)
    outcome = await consumer.run(Trial(id="t", params={"lr": 0.5}))
    assert outcome.status is Status.COMPLETED, outcome.stderr_tail
    assert outcome.argv[-1] == str(Path(outcome.working_dir) / "attempts" / "1" / "config.json")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_no_thread_per_child(make_consumer: ConsumerFactory, tmp_path: Path) -> None:
    """
    Forty scripts at once do not start a thread each (each is reaped through a pidfd).

    asyncio only: trio starts each script from a worker thread of its cache (anyio's launch
    on trio), which idles on for a while afterwards.
    """
    import threading

    gate = tmp_path / "gate"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)\n"
    consumer = make_consumer(python(code + WRITE_RESULT), max_concurrency=40)
    before = threading.active_count()
    # the scripts end only once the gate is opened: all forty are running when the threads are
    # counted, however slowly a busy machine starts them (the bound only ends a hang)
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(consumer.run, Trial(id=f"t{i}"))
            await wait_until(lambda: len(consumer.running) >= 40, "forty scripts to run")
            peak = threading.active_count()
            gate.touch()
    # at most the few threads that create trial files (scripts start on the loop below 64)
    assert peak - before <= 6
    assert children_of(os.getpid()) == []


def test_python_version() -> None:
    """The suite runs on the Python the project supports."""
    assert sys.version_info >= (3, 11)


@pytest.mark.anyio
async def test_echo_prefixes_lines(
    make_consumer: ConsumerFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """With echo, each output line reaches the terminal prefixed with the trial id, and the log keeps it."""
    code = (
        "import sys; print('one'); print('two', file=sys.stderr); sys.stdout.write('tail')\n"
        + WRITE_RESULT
    )
    outcome = await make_consumer(python(code), echo=True).run(Trial(id="t9"))
    assert outcome.status is Status.COMPLETED
    out, err = capfd.readouterr()
    assert out == "[t9] one\n[t9] tail\n"
    assert "[t9] two\n" in err
    assert Path(outcome.stdout_path).read_text() == "one\ntail"


@pytest.mark.anyio
async def test_usage_on_every_outcome(make_consumer: ConsumerFactory) -> None:
    """CPU seconds and peak RSS are on a completed, a failed and a killed attempt alike."""
    scripts = {
        "completed": WRITE_RESULT,
        "exit-3": "import sys; sys.exit(3)",
        "killed": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    }
    for name, code in scripts.items():
        outcome = await make_consumer(python(code)).run(Trial(id=name))
        assert outcome.cpu_seconds is not None and outcome.cpu_seconds > 0, name
        assert outcome.peak_rss_bytes is not None and outcome.peak_rss_bytes > 1_000_000, name


@pytest.mark.anyio
async def test_usage_and_stop_without_pidfds(
    make_consumer: ConsumerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a kernel without ``pidfd_open`` trials are reaped by polling, with their usage."""

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    done = await make_consumer(python(WRITE_RESULT)).run(Trial(id="t"))
    assert done.status is Status.COMPLETED
    assert done.cpu_seconds is not None and done.peak_rss_bytes is not None
    # the timeout leaves a loaded machine time to start the script and ignore SIGTERM first
    slow = make_consumer(python(GRANDCHILD), timeout=5.0, grace=0.3)
    with anyio.fail_after(20):
        stopped = await slow.run(Trial(id="s"))
    assert (stopped.reason, stopped.signal) == (Reason.TIMEOUT, "SIGKILL")
    assert not any(is_alive(pid) for pid in _pids(Path(stopped.working_dir)))


def _log(path: Path) -> BinaryIO:
    return path.open("wb")


@pytest.mark.anyio
async def test_a_cancelled_wait_leaves_the_child_to_the_next(tmp_path: Path) -> None:
    """Of two tasks waiting for one child, the one cancelled leaves the other its exit."""
    gate = tmp_path / "gate"
    code = f"import os, sys, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)\nsys.exit(4)"
    with _log(tmp_path / "out") as out:
        child = await ChildProcess.start(
            python(code), cwd=None, env=os.environ, stdout=out, stderr=out
        )
    exits: list[Exit] = []

    async def wait() -> None:
        exits.append(await child.wait())

    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def wait_first() -> None:
            with first:
                await wait()

        tg.start_soon(wait_first)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(wait)
        tg.start_soon(wait)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        first.cancel()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        gate.touch()
    assert [e.returncode for e in exits] == [4, 4]
    assert exits[0].usage is not None
    assert await child.wait() is exits[0]
    assert children_of(os.getpid()) == []


def _open_logs(below: Path) -> int:
    """How many of this process's descriptors are logs of trials below ``below``."""
    fds = Path("/proc/self/fd")
    links = []
    for fd in os.listdir(fds):
        try:
            links.append(os.readlink(fds / fd))
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    # (CI sends pytest's own output to a .log file)
    return sum(link.startswith(f"{below}/") and link.endswith(".log") for link in links)


@pytest.mark.anyio
async def test_scripts_waiting_to_start_hold_few_logs_open(
    make_consumer: ConsumerFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """
    Forty scripts starting at once in worker threads: those waiting for a thread have no logs
    open yet (each spawn copies every open descriptor into its child, which closes them).
    """
    monkeypatch.setattr(supervisor, "SPAWN_IN_THREADS", 0)  # as with many scripts running
    seen: list[int] = []
    start = ChildProcess.start.__func__  # type: ignore[attr-defined]

    async def counting(cls: type[ChildProcess], *args: Any, **kwargs: Any) -> ChildProcess:
        seen.append(_open_logs(tmp_path))
        return await start(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(ChildProcess, "start", classmethod(counting))
    consumer = make_consumer(python(WRITE_RESULT), max_concurrency=40)
    outcomes = await consumer.map(Trial(id=f"t{i}") for i in range(40))
    assert [o.status if o else None for o in outcomes] == [Status.COMPLETED] * 40
    assert len(seen) == 40
    assert max(seen) <= 2 * 2 * supervisor.SPAWNERS  # two logs a place, two places a thread


@pytest.mark.anyio
@pytest.mark.parametrize("kill", [False, True], ids=["interrupt", "kill"])
async def test_an_interrupt_during_a_wave_of_starts_starts_no_more(
    make_consumer: ConsumerFactory, monkeypatch: pytest.MonkeyPatch, kill: bool
) -> None:
    """
    Interrupted (or killed) just after the first of forty scripts started (in worker threads):
    the trials still waiting to start never start, and those spawned meanwhile are stopped at
    once: with SIGTERM after an interrupt, with SIGKILL (no grace) after a kill.
    """
    monkeypatch.setattr(supervisor, "SPAWN_IN_THREADS", 0)  # as with many scripts running
    start = ChildProcess.start.__func__  # type: ignore[attr-defined]
    consumer = make_consumer(python("import time; time.sleep(600)"), max_concurrency=40)

    async def interrupting(cls: type[ChildProcess], *args: Any, **kwargs: Any) -> ChildProcess:
        child = await start(cls, *args, **kwargs)
        consumer.kill() if kill else consumer.interrupt()
        return child  # type: ignore[no-any-return]

    monkeypatch.setattr(ChildProcess, "start", classmethod(interrupting))
    with anyio.fail_after(120):  # not stopped, the scripts would sleep 600 s
        outcomes = await consumer.map(Trial(id=f"t{i}") for i in range(40))
    assert all(o is not None and o.status is Status.INTERRUPTED for o in outcomes)
    started = [o for o in outcomes if o is not None and o.pid is not None]
    assert 1 <= len(started) <= 2 * supervisor.SPAWNERS  # the first, and those in its places
    assert all(o.reason is Reason.CANCELLED for o in started)
    assert {o.signal for o in started} == {"SIGKILL" if kill else "SIGTERM"}
    for outcome in started:
        assert outcome.pid is not None and not is_alive(outcome.pid)
