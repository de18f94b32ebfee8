"""The workers of a fleet as a store knows them: who runs where, in which job, how busy, how alive."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["WorkerInfo", "WorkerState"]


class WorkerState(StrEnum):
    """Where a worker is in its life."""

    RUNNING = "running"
    """Reserving and running trials."""
    STOPPING = "stopping"
    """Told to stop (a signal, the job's end near): reserves nothing more, its trials are ending."""
    EXITED = "exited"
    """Gone, having said so."""


class WorkerInfo(BaseModel):
    """
    One worker of a fleet, as recorded in the store (the worker registers and beats it).

    Attributes:
        name: the worker's name in the store (``slurm:1234_7`` in a Slurm array task).
        host: the machine it runs on.
        pid: its process id there.
        job_id: the scheduler's job id (a Slurm array's id), if it runs in a job.
        task_id: its index in the job array, if any.
        running: how many trials it was running at its last beat.
        state: where it is in its life.
        started_at: when it registered, by the store's clock.
        beat_at: its last beat, by the store's clock.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    host: str = ""
    pid: int | None = None
    job_id: str | None = None
    task_id: str | None = None
    running: int = Field(default=0, ge=0)
    state: WorkerState = WorkerState.RUNNING
    started_at: datetime | None = None
    beat_at: datetime | None = None
