"""A real Slurm cluster for the fleet tests: skipped only outside CI when there is none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_consumer import StoredTrial, Trial
from async_consumer.stores import store_from_url

from ..conftest import NewSchema, postgres_url, wait_until_sync

JOB_SECONDS = 180.0
"""The longest a test waits for its jobs; only reached when something is broken."""

# A training script that checkpoints: on SIGTERM it saves its step in its working directory
# and exits with the interrupt code; a later attempt (on any worker) resumes from that step.
# Every start, interruption and end is appended to a shared log with the Slurm task it ran in.
# While a file named like the log plus ".hold" exists, a run waits before it starts.
TRAIN = textwrap.dedent("""
    import json, os, signal, sys, time
    env = os.environ
    trial, attempt = env["ASYNC_CONSUMER_TRIAL_ID"], env["ASYNC_CONSUMER_ATTEMPT"]
    log, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if "SLURM_JOB_ID" not in env and len(sys.argv) > 4:
        pause = float(sys.argv[4])  # outside Slurm (a test's own worker) it may go faster
    checkpoint = os.path.join(env["ASYNC_CONSUMER_WORKING_DIR"], "checkpoint.json")
    step = json.load(open(checkpoint))["step"] if os.path.exists(checkpoint) else 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    def note(event):
        with open(log, "a") as f:
            f.write(f"{trial} {attempt} {os.getpid()} {event} {time.time():.6f} {step} "
                    f"{env.get('SLURM_ARRAY_TASK_ID')}\\n")
    while os.path.exists(log + ".hold"):  # held by the test until it has seen what it waits for
        time.sleep(0.05)
    note("start")
    while step < steps:
        if stop:
            json.dump({"step": step}, open(checkpoint, "w"))
            note("interrupted")
            sys.exit(int(env["ASYNC_CONSUMER_INTERRUPT_CODE"]))
        time.sleep(pause)
        step += 1
    note("end")
    json.dump(float(step), open(env["ASYNC_CONSUMER_RESULTS_PATH"], "w"))
""")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the training script's log."""

    trial: str
    attempt: int
    pid: int
    kind: str
    at: float
    step: int
    task: str


def _slurm_is_up() -> str | None:
    """Why Slurm cannot run jobs here, or ``None`` when it can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch is not installed"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    states = done.stdout.split()
    if done.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        return f"no Slurm node is up ({done.stderr.strip() or states})"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    """Slurm is up: skipped outside CI when it is not (in CI, a missing Slurm fails)."""
    problem = _slurm_is_up()
    if problem is None:
        return
    if os.environ.get("CI") or os.environ.get("ASYNC_CONSUMER_REQUIRE_SLURM"):
        pytest.fail(f"Slurm is required here but {problem}; .ci/slurm-up starts one")
    pytest.skip(f"{problem}: run .ci/slurm-up (as root) for a one-node Slurm cluster")


@dataclass
class Fleet:
    """One test's store, working directory and jobs."""

    url: str
    workdir: Path
    runs: Path
    jobs: list[str]

    def add(self, count: int) -> None:
        """Add ``count`` trials to the store."""
        trials = [Trial(id=f"t{i:02d}", params={"x": i}) for i in range(count)]

        async def add() -> None:
            async with store_from_url(self.url) as store:
                await store.add(trials)

        anyio.run(add)

    def train(self, steps: int, pause: float, local_pause: float | None = None) -> list[str]:
        """The command of the checkpointing script, for ``--`` (``local_pause``: outside Slurm)."""
        script = self.workdir / "train.py"
        script.write_text(TRAIN)
        faster = [] if local_pause is None else [str(local_pause)]
        return [sys.executable, str(script), str(self.runs), str(steps), str(pause), *faster]

    @property
    def hold(self) -> Path:
        """While this file exists, every run of ``train`` waits before its first step."""
        return self.runs.with_name(self.runs.name + ".hold")

    def trials(self) -> list[StoredTrial]:
        """Every trial in the store, with its attempts."""

        async def stored() -> list[StoredTrial]:
            async with store_from_url(self.url) as store:
                return await store.list()

        return anyio.run(stored)

    def events(self) -> list[Event]:
        """What the training script logged, in order."""
        if not self.runs.exists():
            return []
        lines = (line.split() for line in self.runs.read_text().splitlines())
        return [
            Event(t, int(a), int(p), k, float(at), int(s), task)
            for t, a, p, k, at, s, task in lines
        ]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Poll what the jobs report until ``condition()`` holds; fail after ``JOB_SECONDS``."""
        try:
            wait_until_sync(condition, what, bound=JOB_SECONDS, every=0.1)
        except pytest.fail.Exception as failed:
            pytest.fail(f"{failed.msg}; squeue: {squeue()}")

    def wait_done(self) -> None:
        """Wait until none of the test's jobs is queued or running."""
        self.wait_for(lambda: not any(squeue(job) for job in self.jobs), "the jobs to end")

    def submit(self, script: Path) -> str:
        """Submit a batch script with ``sbatch`` from the working directory; its job id."""
        argv = ["sbatch", "--parsable", str(script)]
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True, check=True)
        job = done.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def output(self, job: str, task: int) -> str:
        """What one array task's worker printed (Slurm's default output file)."""
        return (self.workdir / f"slurm-{job}_{task}.out").read_text()


def squeue(job: str | None = None) -> str:
    """``squeue``'s lines for a job (or all jobs)."""
    argv = ["squeue", "-h", *(["-j", job] if job else [])]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def status(url: str) -> dict[str, Any]:
    """What ``async-consumer status --json`` prints."""
    argv = [sys.executable, "-m", "async_consumer._cli", "status", "--store", url, "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if text.encode() in cmdline.read():
                        found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


@pytest.fixture
def fleet(slurm: None, tmp_path: Path, new_schema: NewSchema) -> Iterator[Fleet]:
    """A fresh PostgreSQL schema and working directory; its jobs cancelled afterwards."""
    made = Fleet(f"{postgres_url()}?schema={new_schema()}", tmp_path, tmp_path / "runs.log", [])
    try:
        yield made
    finally:
        for job in made.jobs:
            subprocess.run(["scancel", job], check=False)
