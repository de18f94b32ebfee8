"""The ``launch`` command's parser, and the options a ``worker`` has that ``run`` has not."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .argtypes import positive_int, seconds

__all__ = ["add_launch_parser", "add_slurm_options", "add_trial_time"]

_LAUNCH = (
    "Write a batch script that runs N workers as a Slurm job array, submit it with sbatch and "
    "print the job id. Example: async-consumer launch slurm --store postgresql://me@db/search "
    "--workers 8 -j 2 --time 04:00:00 --signal-before 120 -- python train.py --lr {lr}"
)
_STORE_HELP = "sqlite:///path.db, postgresql://user@host/db or memory:"


_SLURM_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--workers",
        {
            "type": positive_int,
            "required": True,
            "metavar": "N",
            "help": "how many workers: the array's size",
        },
    ),
    ("--cpus-per-worker", {"type": positive_int, "metavar": "C", "help": "--cpus-per-task"}),
    (
        "--gpus-per-worker",
        {
            "type": positive_int,
            "metavar": "G",
            "help": "--gres=gpu:G; the workers' GPU slots are the job's",
        },
    ),
    ("--mem", {"metavar": "SIZE", "help": "memory per worker, e.g. 16G"}),
    (
        "--time",
        {
            "dest": "time_limit",
            "metavar": "LIMIT",
            "help": "each worker's time limit, e.g. 04:00:00 or 1-12",
        },
    ),
    ("--partition", {"metavar": "P", "help": "the partition to run in"}),
    ("--account", {"metavar": "A", "help": "the account to charge"}),
    (
        "--signal-before",
        {
            "type": positive_int,
            "metavar": "SECONDS",
            "help": "SIGUSR1 to the workers this long before the time limit: they "
            "stop their trials while these can still checkpoint",
        },
    ),
    ("--job-name", {"default": "async-consumer", "help": "the job's name"}),
    (
        "--output",
        {
            "metavar": "PATTERN",
            "help": "each worker's own log (default Slurm's: slurm-%%A_%%a.out)",
        },
    ),
    (
        "--sbatch-arg",
        {
            "action": "append",
            "default": [],
            "metavar": "=ARG",
            "help": "one more sbatch option, written as --sbatch-arg=--qos=high",
        },
    ),
    (
        "--script",
        {
            "metavar": "FILE",
            "help": "where to keep the batch script (default .async-consumer/slurm/)",
        },
    ),
    ("--dry-run", {"action": "store_true", "help": "print the batch script, submit nothing"}),
)
"""What the fleet asks of Slurm, and what becomes of the script."""


def add_trial_time(parser: argparse.ArgumentParser) -> None:
    """``--trial-time``: how long a trial takes, so that none starts too near the job's end."""
    parser.add_argument(
        "--trial-time",
        type=seconds,
        metavar="SECONDS",
        help="in a Slurm job: start no trial later than this long before the job's end",
    )


def add_slurm_options(parser: argparse.ArgumentParser) -> None:
    """What the fleet asks of Slurm: one array task per worker, each with these resources."""
    slurm = parser.add_argument_group("the Slurm job (one array task per worker)")
    for flag, options in _SLURM_OPTIONS:
        slurm.add_argument(flag, **options)


def add_launch_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_worker_options: Callable[[argparse.ArgumentParser], None],
    add_search_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """
    ``launch slurm``: ``--store``, the Slurm options, the search's, then every other option of
    ``worker``.

    The worker's options are those ``add_worker_options`` adds; they are kept as
    ``args.worker_options``, for ``launch`` to pass on those that were set. The search's
    (``add_search_options``: ``-n``, ``--sampler``...) are recorded in the store before the
    job is submitted, where every worker reads them.
    """
    worker = argparse.ArgumentParser(add_help=False)
    add_worker_options(worker)
    launch = commands.add_parser(
        "launch",
        help="start a fleet of workers with a cluster scheduler",
        description="Start a fleet of workers that share a store, through a cluster's "
        "scheduler (Slurm). Example: async-consumer launch slurm --store "
        "postgresql://me@db/search --workers 8 -- python train.py --lr {lr}",
    )
    schedulers = launch.add_subparsers(dest="scheduler", metavar="SCHEDULER", required=True)
    slurm = schedulers.add_parser(
        "slurm", help="a Slurm job array of workers", description=_LAUNCH, parents=[worker]
    )
    slurm.add_argument("--store", required=True, metavar="URL", help=_STORE_HELP)
    add_slurm_options(slurm)
    add_search_options(slurm)
    slurm.set_defaults(worker_options=[a for a in worker._actions if a.option_strings])
