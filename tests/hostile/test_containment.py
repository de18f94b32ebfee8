"""
Containment on a real kernel: no process outlives its trial, in every mode this machine has,
and the limits per trial hold (memory, processes, CPU) without harming siblings or the consumer.

The cgroup modes need root (or a delegated cgroup); a mode this machine lacks is skipped, the
rest run for real. Every test kills what it may have left (its processes carry a token in their
command lines) and removes its cgroups, whatever happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_consumer import (
    Consumer,
    Limits,
    LimitsUnavailable,
    Outcome,
    Reason,
    Status,
    Trial,
)
from async_consumer._cli.main import main
from async_consumer._supervise.contain import CONTAINMENT_ENV, ContainmentMode, choose

from ..conftest import wait_until, wait_until_sync
from .escapes import BOMB, ESCAPES, HOG, SPIN, cleanup, escape_code, left_running, trial_cgroups

MODES = ["cgroup-v1", "cgroup-v2", "subreaper"]
MIB = 1 << 20


def _available(mode: str, limits: Limits | None = None) -> bool:
    try:
        choose(mode, limits or Limits())
    except ValueError:
        return False
    return True


def _need(mode: str, limits: Limits | None = None) -> None:
    if not _available(mode, limits):
        pytest.skip(f"no {mode} here (cgroups need root or a delegated cgroup)")


@pytest.fixture
def token() -> Iterator[str]:
    """Digits that mark a test's processes; whatever carries them is killed after the test."""
    token = f"{os.getpid() % 1000:03d}{random.randrange(10**6):06d}"
    try:
        yield token
    finally:
        cleanup(token)


def _python(code: str) -> Trial:
    return Trial(id=f"t{random.randrange(10**9)}", params={"code": code})


def _limited(limits: Limits, tmp_path: Path, *command: str, **options: Any) -> Consumer:
    """
    A consumer whose trials ``limits`` hold, skipped where no cgroup can enforce them; it runs
    ``command``, by default its trial's ``code`` parameter.
    """
    _need("cgroup", limits)
    argv = list(command) or [sys.executable, "-c", "{code}"]
    return Consumer(argv, base_dir=tmp_path, limits=limits, **options)


async def _run_one(consumer: Consumer, trial: Trial) -> Outcome:
    async with consumer:
        return await consumer.run(trial)


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["exit", "timeout"])
@pytest.mark.parametrize("kind", sorted(ESCAPES))
@pytest.mark.parametrize("mode", MODES)
def test_no_escape_outlives_its_trial(
    mode: str, kind: str, ending: str, token: str, tmp_path: Path
) -> None:
    """A process that left the trial's session (any way) is gone once the trial has ended."""
    _need(mode)
    consumer = Consumer(
        [sys.executable, "-c", "{code}", "{ending}"],
        base_dir=tmp_path,
        containment=mode,
        grace=0.2,
        timeout=0.5 if ending == "timeout" else 60,
    )
    assert choose(mode, Limits()).mode == ContainmentMode(mode)
    trial = Trial(id=kind, params={"code": escape_code(kind, token), "ending": ending})
    outcome = anyio.run(_run_one, consumer, trial)
    escaped = int((Path(outcome.working_dir) / "escaped.pid").read_text())
    if ending == "exit":
        assert (outcome.status, outcome.reason) == (Status.COMPLETED, None), outcome.stderr_tail
    else:
        assert (outcome.status, outcome.reason) == (Status.BROKEN, Reason.TIMEOUT)
    assert escaped != outcome.pid
    assert left_running(token) == []
    # and ps agrees (a zombie's command line is empty: it shows as [sleep] <defunct>)
    ps = subprocess.run(
        ["ps", "-eo", "pid=,stat=,args="], check=True, capture_output=True, text=True
    )
    assert [line for line in ps.stdout.splitlines() if token in line] == []


@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_trial_leaves_nothing_either(mode: str, token: str, tmp_path: Path) -> None:
    """A trial stopped by the orchestrator (a Ctrl-C's path) takes its escaped daemon with it."""
    _need(mode)
    consumer = Consumer(
        [sys.executable, "-c", "{code}", "timeout"], base_dir=tmp_path, containment=mode, grace=0.2
    )
    trial = Trial(id="stopped", params={"code": escape_code("daemon", token)})

    async def scenario() -> Outcome:
        async with consumer, anyio.create_task_group() as tg:
            done: list[Outcome] = []

            async def run() -> None:
                done.append(await consumer.run(trial))

            tg.start_soon(run)
            pidfile = tmp_path / "default" / "stopped" / "escaped.pid"
            await wait_until(pidfile.exists, "the daemon's pid file")
            assert left_running(token), "the daemon runs while its trial does"
            await consumer.stop("stopped")
        return done[0]

    outcome = anyio.run(scenario)
    assert (outcome.status, outcome.reason) == (Status.INTERRUPTED, Reason.STOPPED)
    assert left_running(token) == []


async def _hog_and_siblings(consumer: Consumer, token: str, rounds: int) -> list[Outcome]:
    trials = []
    for round_ in range(rounds):
        trials.append(Trial(id=f"hog-{round_}", params={"code": HOG.format(token=token)}))
        trials.extend(
            Trial(
                id=f"sibling-{round_}-{n}", params={"code": SPIN.format(token=token, seconds=0.3)}
            )
            for n in range(3)
        )
    outcomes = []
    async with consumer, consumer.run_batch(trials) as batch:
        outcomes = [outcome async for outcome in batch]
    return outcomes


def _check_hog_round(outcomes: list[Outcome], limit: int) -> None:
    hogs = [o for o in outcomes if o.trial_id.startswith("hog")]
    siblings = [o for o in outcomes if o.trial_id.startswith("sibling")]
    assert len(siblings) == 3 * len(hogs)
    for hog in hogs:
        assert (hog.status, hog.reason) == (Status.BROKEN, Reason.OUT_OF_MEMORY), hog.message
        assert hog.peak_memory_bytes is not None
        assert limit * 0.9 <= hog.peak_memory_bytes <= limit
        assert "memory limit of 64 MiB" in hog.message
    assert all(s.status is Status.COMPLETED for s in siblings)


@pytest.mark.parametrize(
    "rounds", [pytest.param(1, id="once"), pytest.param(20, id="20-times", marks=pytest.mark.slow)]
)
def test_a_memory_hog_ends_out_of_memory_and_its_siblings_complete(
    rounds: int, token: str, tmp_path: Path
) -> None:
    """The hog is killed by its own limit (the cgroup's OOM counter says so); 3 siblings finish."""
    limits = Limits(memory="64M")
    consumer = _limited(limits, tmp_path, containment="cgroup", max_concurrency=4, timeout=60)
    outcomes = anyio.run(_hog_and_siblings, consumer, token, rounds)
    assert len(outcomes) == 4 * rounds
    _check_hog_round(outcomes, 64 * MIB)
    assert left_running(token) == []


def test_a_sigkill_alone_is_not_out_of_memory(tmp_path: Path) -> None:
    """A script that SIGKILLs itself under a memory limit ends by its signal, not out_of_memory."""
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    consumer = _limited(Limits(memory="64M"), tmp_path, sys.executable, "-c", kill)
    outcome = anyio.run(_run_one, consumer, Trial(id="killed"))
    assert (outcome.status, outcome.reason, outcome.signal) == (
        Status.BROKEN,
        Reason.SIGNAL,
        "SIGKILL",
    )
    assert outcome.peak_memory_bytes is not None


@pytest.mark.slow
def test_a_fork_bomb_is_contained(token: str, tmp_path: Path) -> None:
    """A fork bomb hits its process limit and ends broken; its siblings complete; none is left."""
    consumer = _limited(Limits(pids=32), tmp_path, max_concurrency=4, timeout=30, grace=0.2)
    bomb = Trial(id="bomb", params={"code": BOMB.format(token=token)}, timeout=2)
    siblings = [
        Trial(id=f"sibling-{n}", params={"code": SPIN.format(token=token, seconds=0.5)})
        for n in range(3)
    ]

    async def scenario() -> list[Outcome]:
        async with consumer, consumer.run_batch([bomb, *siblings]) as batch:
            return [outcome async for outcome in batch]

    outcomes = {o.trial_id: o for o in anyio.run(scenario)}
    assert (outcomes["bomb"].status, outcomes["bomb"].reason) == (Status.BROKEN, Reason.TIMEOUT)
    assert "forks refused by its process limit" in outcomes["bomb"].message
    assert all(outcomes[s.id].status is Status.COMPLETED for s in siblings)
    assert left_running(token) == []


@pytest.mark.slow
def test_a_cpu_quota_holds_a_spinning_trial_near_its_share(token: str, tmp_path: Path) -> None:
    """With ``cpus=0.5``, a script spinning for 2 s of wall time gets about half a CPU."""
    consumer = _limited(Limits(cpus=0.5), tmp_path)
    trial = Trial(id="spin", params={"code": SPIN.format(token=token, seconds=2)})
    outcome = anyio.run(_run_one, consumer, trial)
    assert outcome.is_completed
    assert outcome.cpu_seconds is not None and outcome.duration is not None
    ratio = outcome.cpu_seconds / outcome.duration
    # at most its quota (and a little for the start-up before the script joins... none: it
    # joins before exec); a busy machine may give it less, never more
    assert 0.05 < ratio <= 0.6, ratio


def test_the_v2_hierarchy_tracks_and_kills_with_cgroup_kill(token: str, tmp_path: Path) -> None:
    """In cgroup v2 (even without controllers) the trial's cgroup is made, killed and removed."""
    _need("cgroup-v2")
    consumer = Consumer(
        [sys.executable, "-c", "{code}", "exit"], base_dir=tmp_path, containment="cgroup-v2"
    )
    directory = Path(choose("cgroup-v2", Limits()).describe().rsplit(" under ", 1)[1])
    # this process's trial cgroups only: other suites' consumers share the directory (CI)
    ours = f"async-consumer-{os.getpid()}-"

    def left() -> set[str]:
        return {p.name for p in directory.iterdir() if p.is_dir() and p.name.startswith(ours)}

    before = left()
    outcome = anyio.run(_run_one, consumer, _python(escape_code("daemon", token)))
    assert outcome.is_completed, outcome.stderr_tail
    assert left_running(token) == []
    assert left() == before


def test_limits_that_cannot_be_enforced_are_refused() -> None:
    """Limits with no cgroup to enforce them: an error before anything starts, never unlimited."""
    with pytest.raises(LimitsUnavailable, match="cannot enforce --memory 2G"):
        Consumer(["true"], limits=Limits(memory="2G"), containment="subreaper")


@pytest.fixture
def params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file of one trial's parameters in ``tmp_path``, the working directory, under subreaper."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONTAINMENT_ENV, "subreaper")
    path = tmp_path / "p.jsonl"
    path.write_text('{"x": 1}\n')
    return path


def test_the_command_refuses_limits_it_cannot_enforce(
    tmp_path: Path, params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --memory`` without a cgroup: one line, exit 2, no store made, nothing run."""
    ran = tmp_path / "ran"
    status = main(["run", "--params", str(params), "--memory", "2G", "--", "touch", str(ran)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "cannot enforce --memory 2G" in err
    assert not (tmp_path / ".async-consumer").exists()
    assert not ran.exists()


def test_the_command_says_which_containment_is_in_force(
    params: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` names the containment mode at start-up, and ``status`` the one of this host."""
    command = ["sh", "-c", "echo 1 > $ORION_RESULTS_PATH"]
    assert main(["run", "--params", str(params), "--", *command]) == 0
    assert "containment: subreaper" in capsys.readouterr().err
    assert main(["status"]) == 0
    assert "on this host, containment: subreaper" in capsys.readouterr().err


def test_an_unknown_containment_is_refused() -> None:
    """A containment name that does not exist is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="expected one of auto, cgroup"):
        Consumer(["true"], containment="jail")


_DYING_CONSUMER = """
import sys, anyio
from async_consumer import Consumer, Trial
async def main() -> None:
    consumer = Consumer([sys.executable, "-c", sys.argv[1], "timeout"], base_dir=sys.argv[2],
                        containment=sys.argv[3], grace=0.2, watchdog=True)
    await consumer.run(Trial(id="dies"))
anyio.run(main)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_sigkilled_consumer_leaves_no_escaped_process(
    mode: str, token: str, tmp_path: Path
) -> None:
    """SIGKILL to the consumer: its watchdog empties the trial's box too, and removes its cgroup."""
    _need(mode)
    code = escape_code("daemon", token)
    consumer = subprocess.Popen([sys.executable, "-c", _DYING_CONSUMER, code, str(tmp_path), mode])
    try:
        pidfile = tmp_path / "default" / "dies" / "escaped.pid"
        wait_until_sync(pidfile.exists, "the daemon's pid file")
        escaped = int(pidfile.read_text())
        # the daemon writes its pid file before it execs the sleep that carries the token
        wait_until_sync(lambda: escaped in left_running(token), "the daemon's sleep")
        consumer.kill()
        consumer.wait()

        # the watchdog kills, then removes the cgroups: wait for both (the bound ends a failure)
        wait_until_sync(
            lambda: not left_running(token) and not trial_cgroups(consumer.pid),
            "nothing left behind",
        )
        assert left_running(token) == []
        assert trial_cgroups(consumer.pid) == []
    finally:
        consumer.kill()
        consumer.wait()


def test_the_subreaper_flag_is_held_only_while_marked_trials_run(tmp_path: Path) -> None:
    """The consumer is its descendants' subreaper while a subreaper-mode trial runs, not after."""
    _need("subreaper")
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(-1)

    def is_subreaper() -> bool:
        assert libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
        return bool(flag.value)

    go, started = tmp_path / "go", tmp_path / "started"
    script = (
        f"touch {started}; while [ ! -e {go} ]; do sleep 0.01; done; echo 1 > $ORION_RESULTS_PATH"
    )
    consumer = Consumer(["sh", "-c", script], base_dir=tmp_path, containment="subreaper")
    assert not is_subreaper()

    async def scenario() -> bool:
        async with consumer, anyio.create_task_group() as tg:
            tg.start_soon(consumer.run, Trial(id="t"))
            await wait_until(started.exists, "the script to start")
            held = is_subreaper()
            go.touch()
        return held

    assert anyio.run(scenario)
    assert not is_subreaper()


def test_a_worker_refuses_limits_it_cannot_enforce_before_opening_its_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``worker --pids`` without a cgroup: one line, exit 2, the store not even created."""
    monkeypatch.setenv(CONTAINMENT_ENV, "subreaper")
    store = tmp_path / "w.db"
    status = main(["worker", "--store", f"sqlite:///{store}", "--pids", "64", "--", "true"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "cannot enforce --pids 64" in err
    assert not store.exists()


@pytest.mark.parametrize("mode", ["cgroup-v1", "cgroup-v2"])
def test_the_cgroups_a_dead_consumer_left_are_swept(mode: str, token: str, tmp_path: Path) -> None:
    """A consumer killed with its watchdog left a trial's cgroup: the next one empties and removes it."""
    _need(mode)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no process has now
    parent = choose(mode, Limits())._directories["freezer" if mode == "cgroup-v1" else ""]
    stale = parent / f"async-consumer-{gone.pid}-1"
    stale.mkdir()
    left = subprocess.Popen(["sleep", f"3{token}.25"], start_new_session=True)
    try:
        (stale / "cgroup.procs").write_text(str(left.pid))
        consumer = Consumer(["true"], base_dir=tmp_path, containment=mode)
        outcome = anyio.run(_run_one, consumer, Trial(id="t"))
        assert outcome.status is Status.BROKEN  # wrote no results: what matters is below
        assert left.wait(timeout=30) == -9
        assert not stale.exists()
    finally:
        left.kill()
        left.wait()
        if stale.exists():
            with contextlib.suppress(OSError):
                stale.rmdir()
