"""The Slurm job a worker runs in, read from the variables Slurm sets, and when the job ends."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import anyio

__all__ = ["SlurmJob", "job_end", "parse_end_time"]

logger = logging.getLogger("async_consumer")

_SQUEUE_SECONDS = 10.0
"""How long to wait for ``squeue`` before going on without the job's end time."""


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """
    The job (and array task) a process runs in, as Slurm's environment describes it.

    Attributes:
        job_id: ``SLURM_JOB_ID``, the id of this job (each array task has its own).
        array_job_id: ``SLURM_ARRAY_JOB_ID``, the id the whole array was submitted as.
        task_id: ``SLURM_ARRAY_TASK_ID``, this task's index in the array.
        gpus: the GPU ids of the allocation (``CUDA_VISIBLE_DEVICES`` as Slurm set it).
    """

    job_id: str
    array_job_id: str | None = None
    task_id: str | None = None
    gpus: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SlurmJob | None:
        """The job described by ``environ``, or ``None`` outside a Slurm job."""
        job_id = environ.get("SLURM_JOB_ID", "").strip()
        if not job_id:
            return None
        array_job_id = environ.get("SLURM_ARRAY_JOB_ID", "").strip() or None
        task_id = environ.get("SLURM_ARRAY_TASK_ID", "").strip() or None
        devices = environ.get("CUDA_VISIBLE_DEVICES", "")
        gpus = tuple(d.strip() for d in devices.split(",") if d.strip())
        return cls(job_id, array_job_id, task_id, gpus)

    @property
    def label(self) -> str:
        """How Slurm's own tools name the job: ``1234_7`` for an array task, else ``1234``."""
        if self.array_job_id and self.task_id:
            return f"{self.array_job_id}_{self.task_id}"
        return self.job_id

    @property
    def worker_name(self) -> str:
        """The worker's name in the store: stable across a requeue of the same task."""
        return f"slurm:{self.label}"


def parse_end_time(text: str) -> datetime | None:
    """
    The end time ``squeue -o %e`` printed (local time, no zone), or ``None`` if it has none.

    Slurm prints ``N/A``, ``Unknown`` or ``NONE`` for jobs without a limit.
    """
    text = text.strip()
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


async def job_end(job_id: str) -> datetime | None:
    """
    When the job's time limit ends, from ``squeue`` (Slurm 22.05 sets no variable for it).

    Asked once, when the worker starts: a failure (no ``squeue``, a slow controller) only
    means the worker does not know, and it says so in one line.
    """
    argv = ["squeue", "-h", "-j", job_id, "-o", "%e"]
    try:
        with anyio.fail_after(_SQUEUE_SECONDS):
            done = await anyio.run_process(argv, check=False)
    except (OSError, TimeoutError) as exc:
        logger.warning(
            "cannot tell when Slurm job %s ends (%s): --trial-time not applied", job_id, exc
        )
        return None
    end = parse_end_time(
        done.stdout.decode(errors="replace").splitlines()[0] if done.stdout else ""
    )
    if done.returncode != 0 or end is None:
        logger.info("Slurm job %s has no end time that squeue could tell", job_id)
    return end


def parse_kill_wait(config: str) -> float | None:
    """``KillWait`` in seconds from ``scontrol show config``'s text, or ``None`` if absent."""
    for line in config.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "KillWait":
            number = value.split()[0] if value.split() else ""
            return float(number) if number.isdigit() else None
    return None


async def kill_wait() -> float | None:
    """Seconds Slurm waits between a job's SIGTERM and its SIGKILL; ``None`` if it cannot tell."""
    try:
        with anyio.fail_after(_SQUEUE_SECONDS):
            done = await anyio.run_process(["scontrol", "show", "config"], check=False)
    except (OSError, TimeoutError):
        return None
    return parse_kill_wait(done.stdout.decode(errors="replace")) if done.returncode == 0 else None
