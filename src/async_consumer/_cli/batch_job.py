"""What a worker takes from the batch job it runs in: its name, its GPUs, when it must stop."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .trial_params import parse_assignment

__all__ = ["Placement", "placement_of"]

logger = logging.getLogger("async_consumer")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a worker runs: the ``Worker``'s arguments of the same names (passed as they are)."""

    name: str | None = None
    job_id: str | None = None
    task_id: str | None = None
    reserve_until: float | None = None


async def placement_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Placement:
    """
    The worker's place in a Slurm job, if it runs in one (``environ`` is its environment).

    Also gives the worker the job's GPUs as its ``gpu`` slots (``CUDA_VISIBLE_DEVICES`` as
    Slurm set it), unless ``--slots gpu=...`` says otherwise.
    """
    from .._slurm.job import SlurmJob, job_end  # here: Slurm's module stays out of ``run``

    job = SlurmJob.from_environ(environ)
    if job is None:
        if args.trial_time is not None:
            logger.warning("--trial-time: not in a Slurm job, so no end to keep clear of; ignored")
        return Placement()
    if job.gpus and "gpu" not in {parse_assignment(s, "--slots")[0] for s in args.slots}:
        args.slots = [*args.slots, "gpu=" + ",".join(job.gpus)]
    reserve_until = None
    if args.trial_time is not None:
        end = await job_end(job.job_id)
        if end is not None:
            reserve_until = end.timestamp() - args.trial_time
            start_by = datetime.fromtimestamp(reserve_until).astimezone()
            logger.info(
                "Slurm job %s ends at %s: no trial starts after %s",
                job.label,
                end.isoformat(timespec="seconds"),
                start_by.isoformat(timespec="seconds"),
            )
    return Placement(job.worker_name, job.array_job_id or job.job_id, job.task_id, reserve_until)
