"""Slurm without a cluster: the batch script, the job's facts, and ``launch slurm`` up to sbatch."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from async_consumer._cli.batch_job import placement_of
from async_consumer._cli.main import main
from async_consumer._slurm.job import SlurmJob, parse_end_time, parse_kill_wait
from async_consumer._slurm.script import FleetSpec, batch_script, slurm_seconds

WORKER = [
    "/opt/venv/bin/async-consumer",
    "worker",
    "--store",
    "postgresql://me@db/search",
    "--jobs",
    "2",
    "--",
    "python",
    "train.py",
    "--lr",
    "{lr}",
    "--note",
    "two words",
]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("05:30", 330),
        ("1:00:00", 3600),
        ("2-0", 172800),
        ("1-2:30", 95400),
        ("1-0:0:10", 86410),
    ],
    ids=["minutes", "mm:ss", "hh:mm:ss", "d-h", "d-h:m", "d-h:m:s"],
)
def test_slurm_time_limits(text: str, seconds: int) -> None:
    """Every form of Slurm's --time is read as Slurm reads it."""
    assert slurm_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "0", "1:2:3:4", "-5"], ids=repr)
def test_bad_time_limits(text: str) -> None:
    """A time limit Slurm would not take is a ValueError naming --time."""
    with pytest.raises(ValueError, match="--time"):
        slurm_seconds(text)


def test_script_of_a_full_spec() -> None:
    """Every option becomes one #SBATCH line; the worker is exec'd with its argv quoted."""
    spec = FleetSpec(
        workers=32,
        worker_argv=WORKER,
        cpus_per_worker=4,
        gpus_per_worker=2,
        mem="16G",
        time="04:00:00",
        partition="gpu",
        account="lab",
        signal_before=120,
        chdir="/home/me/search",
        output="logs/%A_%a.out",
        sbatch_args=("--qos=high",),
    )
    script = batch_script(spec)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=async-consumer",
        "#SBATCH --array=1-32",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=04:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --chdir=/home/me/search",
        "#SBATCH --output=logs/%A_%a.out",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --qos=high",
    ]
    assert script.startswith("#!/bin/bash\n")
    command = script[script.index("exec ") :].replace("\\\n", " ")
    assert shlex.split(command) == ["exec", *WORKER]


def test_script_is_valid_bash(tmp_path: Path) -> None:
    """bash accepts the script, and running it (with exec replaced by echo) gives the worker's argv."""
    script = batch_script(FleetSpec(workers=2, worker_argv=WORKER))
    path = tmp_path / "fleet.sbatch"
    path.write_text(script.replace("\nexec ", "\nprintf '%s\\n' "))
    subprocess.run(["bash", "-n", str(path)], check=True)
    printed = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=True)
    assert printed.stdout.splitlines() == WORKER


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "--workers"),
        ({"mem": "lots"}, "--mem"),
        ({"time": "1h"}, "--time"),
        ({"time": "2", "signal_before": 120}, "--signal-before"),
        ({"partition": "a b"}, "--partition"),
        ({"sbatch_args": ("qos=high",)}, "--sbatch-arg"),
        ({"sbatch_args": ("--a\n--b",)}, "--sbatch-arg"),
    ],
    ids=["workers", "mem", "time", "signal-after-end", "partition", "arg-no-dash", "arg-newline"],
)
def test_bad_specs_are_refused(changes: dict[str, object], message: str) -> None:
    """An option Slurm could not take is refused, naming it, before any script is written."""
    fields: dict[str, object] = {"workers": 2, "worker_argv": WORKER, **changes}
    with pytest.raises(ValueError, match=message):
        batch_script(FleetSpec(**fields))  # type: ignore[arg-type]


def test_job_facts_from_the_environment() -> None:
    """An array task is named after its array and index; GPUs come from CUDA_VISIBLE_DEVICES."""
    env = {
        "SLURM_JOB_ID": "1240",
        "SLURM_ARRAY_JOB_ID": "1234",
        "SLURM_ARRAY_TASK_ID": "7",
        "CUDA_VISIBLE_DEVICES": "2,3",
    }
    job = SlurmJob.from_environ(env)
    assert job == SlurmJob("1240", "1234", "7", ("2", "3"))
    assert job.worker_name == "slurm:1234_7"
    plain = SlurmJob.from_environ({"SLURM_JOB_ID": "99"})
    assert plain is not None and plain.worker_name == "slurm:99" and plain.gpus == ()
    assert SlurmJob.from_environ({"HOME": "/root"}) is None


def test_end_times_as_squeue_prints_them() -> None:
    """squeue's %e is local time; jobs without a limit print no time."""
    end = parse_end_time("2026-11-30T13:29:31\n")
    assert end == datetime(2026, 11, 30, 13, 29, 31).astimezone()
    assert parse_end_time("N/A") is None
    assert parse_end_time("Unknown") is None


def _worker_args(*slots: str, trial_time: float | None = None) -> argparse.Namespace:
    return argparse.Namespace(slots=list(slots), trial_time=trial_time)


def test_gpu_slots_come_from_the_allocation() -> None:
    """In a job with GPUs, the worker's gpu slots are the job's, unless --slots gpu= is given."""
    env = {"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "0,1"}
    args = _worker_args()
    place = anyio.run(placement_of, args, env)
    assert args.slots == ["gpu=0,1"]
    assert (place.name, place.job_id, place.task_id) == ("slurm:5", "5", None)
    given = _worker_args("gpu=1")
    anyio.run(placement_of, given, env)
    assert given.slots == ["gpu=1"]
    outside = _worker_args()
    assert anyio.run(placement_of, outside, {"CUDA_VISIBLE_DEVICES": "0"}).name is None
    assert outside.slots == []


def test_no_end_time_means_no_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When squeue cannot tell the job's end, --trial-time is not applied and nothing fails."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue here
    place = anyio.run(placement_of, _worker_args(trial_time=60.0), {"SLURM_JOB_ID": "5"})
    assert place.reserve_until is None and place.name == "slurm:5"


def test_trial_time_from_the_job_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reserves nothing later than --trial-time before the end squeue reports."""
    squeue = tmp_path / "squeue"
    squeue.write_text('#!/bin/sh\n[ "$3" = 77 ] && echo 2030-01-01T12:00:00\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    place = anyio.run(placement_of, _worker_args(trial_time=600.0), {"SLURM_JOB_ID": "77"})
    end = datetime(2030, 1, 1, 12, 0, 0).astimezone().timestamp()
    assert place.reserve_until == end - 600.0


def _launch(*argv: str) -> list[str]:
    return ["launch", "slurm", "--store", "postgresql://me@db/search", *argv]


def test_dry_run_prints_the_script(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--dry-run prints the script; the worker gets the execution options that were set."""
    monkeypatch.chdir(tmp_path)
    argv = _launch(
        "--workers",
        "4",
        "-j",
        "3",
        "--time",
        "1:00:00",
        "--signal-before",
        "90",
        "--retries",
        "2",
        "--echo",
        "--env-deny",
        "AWS_*",
        "--trial-time",
        "600",
        "--sbatch-arg=--qos=high",
        "--dry-run",
        "--",
        "python",
        "t.py",
        "--x",
        "{x}",
    )
    assert main(argv) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=1-4" in script and "#SBATCH --qos=high" in script
    assert f"#SBATCH --chdir={tmp_path}" in script
    command = shlex.split(script[script.index("exec ") :].replace("\\\n", " "))
    assert command[2:] == [
        "worker",
        "--store",
        "postgresql://me@db/search",
        "--trial-time",
        "600.0",
        "--jobs",
        "3",
        "--retries",
        "2",
        "--echo",
        "--env-deny=AWS_*",
        "--",
        "python",
        "t.py",
        "--x",
        "{x}",
    ]
    assert Path(command[1]).name == "async-consumer" or command[1] == sys.executable
    assert not (tmp_path / ".async-consumer").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "2", "--dry-run"], "no command"),
        (
            ["--workers", "2", "--time", "10", "--trial-time", "600", "--dry-run", "--", "x"],
            "--trial-time",
        ),
        (["--workers", "2", "--mem", "lots", "--dry-run", "--", "x"], "--mem"),
    ],
    ids=["no-command", "trial-longer-than-job", "bad-mem"],
)
def test_launch_refuses_bad_input(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad input is one line naming the problem, exit 2, nothing submitted."""
    assert main(_launch(*argv)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_memory_store_cannot_be_a_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    """A memory: store lives in one process: launch refuses it."""
    assert main(["launch", "slurm", "--store", "memory:", "--workers", "2", "--", "x"]) == 2
    assert "postgresql://" in capsys.readouterr().err


def test_without_sbatch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without sbatch, launch says so in one line (exit 1) and keeps the script it wrote."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(_launch("--workers", "2", "--script", "fleet.sbatch", "--", "x")) == 1
    assert "sbatch not found" in capsys.readouterr().err
    assert "#SBATCH --array=1-2" in (tmp_path / "fleet.sbatch").read_text()


def test_kill_wait_from_the_config() -> None:
    """KillWait is read from scontrol show config; absent or odd values are unknown."""
    config = "Configuration data as of 2026-11-30T13:00:00\nKillWait                = 30 sec\nMailProg = x\n"
    assert parse_kill_wait(config) == 30.0
    assert parse_kill_wait("MailProg = x") is None
    assert parse_kill_wait("KillWait = (null)") is None


def test_launch_warns_of_a_grace_past_kill_wait(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A --grace Slurm would cut short is submitted, with a note naming KillWait."""
    for name, text in {
        "scontrol": "echo 'KillWait = 30 sec'",
        "sbatch": "echo '4242;cluster'",
    }.items():
        tool = tmp_path / name
        tool.write_text(f"#!/bin/sh\n{text}\n")
        tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert main(_launch("--workers", "2", "--grace", "45", "--signal-before", "40", "--", "x")) == 0
    captured = capsys.readouterr()
    assert captured.out == "4242\n"
    assert "KillWait 30 s" in captured.err and "--signal-before 40 s" in captured.err
    assert len(list((tmp_path / ".async-consumer" / "slurm").glob("*.sbatch"))) == 1
