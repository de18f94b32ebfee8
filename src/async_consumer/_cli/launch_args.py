"""The options of ``async-consumer launch slurm`` that are Slurm's, not the worker's."""

from __future__ import annotations

import argparse

__all__ = ["add_slurm_options"]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of 1 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_slurm_options(parser: argparse.ArgumentParser) -> None:
    """What the fleet asks of Slurm: one array task per worker, each with these resources."""
    slurm = parser.add_argument_group("the Slurm job (one array task per worker)")
    slurm.add_argument(
        "--workers",
        type=_count,
        required=True,
        metavar="N",
        help="how many workers: the array's size",
    )
    slurm.add_argument("--cpus-per-worker", type=_count, metavar="C", help="--cpus-per-task")
    slurm.add_argument(
        "--gpus-per-worker",
        type=_count,
        metavar="G",
        help="--gres=gpu:G; the worker's GPU slots are the job's (unless --slots)",
    )
    slurm.add_argument("--mem", metavar="SIZE", help="memory per worker, e.g. 16G")
    slurm.add_argument(
        "--time",
        dest="time_limit",
        metavar="LIMIT",
        help="each worker's time limit, e.g. 04:00:00 or 1-12",
    )
    slurm.add_argument("--partition", metavar="P", help="the partition to run in")
    slurm.add_argument("--account", metavar="A", help="the account to charge")
    slurm.add_argument(
        "--signal-before",
        type=_count,
        metavar="SECONDS",
        help="send the workers SIGUSR1 this long before the time limit: they "
        "stop their trials while these can still checkpoint",
    )
    slurm.add_argument("--job-name", default="async-consumer", help="the job's name")
    slurm.add_argument(
        "--output",
        metavar="PATTERN",
        help="each worker's own log (default Slurm's: slurm-%%A_%%a.out)",
    )
    slurm.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="=ARG",
        help="one more sbatch option, written as --sbatch-arg=--qos=high",
    )
    slurm.add_argument(
        "--script",
        metavar="FILE",
        help="where to keep the batch script (default .async-consumer/slurm/)",
    )
    slurm.add_argument(
        "--dry-run", action="store_true", help="print the batch script instead of submitting it"
    )
