"""``async-consumer launch slurm``: write a fleet's batch script, submit it, print the job id."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import anyio

from .._errors import LaunchError
from .._search.plan import SearchPlan
from .._slurm.job import kill_wait
from .._slurm.script import FleetSpec, batch_script, slurm_seconds
from ..stores import store_from_url
from . import searching
from .args import run_options
from .consumer_setup import consumer_from
from .experiment import experiment_version
from .view import View

__all__ = ["forwarded", "launch", "worker_command"]


def forwarded(args: argparse.Namespace, actions: Iterable[argparse.Action]) -> list[str]:
    """The options among ``actions`` that ``args`` sets away from their defaults, as argv."""
    argv: list[str] = []
    for action in actions:
        value = getattr(args, action.dest, action.default)
        if value == action.default or action.dest == "help":
            continue
        flag = next(
            (o for o in action.option_strings if o.startswith("--")), action.option_strings[0]
        )
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(flag)
        elif isinstance(action, argparse._StoreConstAction):  # --maximize or --minimize
            argv += [flag] if value == action.const else []
        elif isinstance(action, argparse._AppendAction):
            argv += [f"{flag}={item}" for item in value]
        else:
            argv += [flag, str(value)]
    return argv


def worker_command() -> list[str]:
    """How a batch script starts a worker: this installation's ``async-consumer``, by full path."""
    beside = Path(sys.executable).parent / "async-consumer"
    found = str(beside) if beside.is_file() else shutil.which("async-consumer")
    return [found] if found else [sys.executable, "-m", "async_consumer._cli"]


def _spec(args: argparse.Namespace) -> FleetSpec:
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    worker = [*worker_command(), "worker", "--store", args.store]
    worker += [*forwarded(args, args.worker_options), "--", *command]
    return FleetSpec(
        workers=args.workers,
        worker_argv=worker,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        mem=args.mem,
        time=args.time_limit,
        partition=args.partition,
        account=args.account,
        signal_before=args.signal_before,
        job_name=args.job_name,
        chdir=os.getcwd(),
        output=args.output,
        sbatch_args=tuple(args.sbatch_arg),
    )


def _check(args: argparse.Namespace, view: View) -> None:
    """Refuse what could never work, before anything is submitted."""
    scheme = args.store.partition(":")[0].lower()
    if scheme == "memory":
        msg = (
            "--store memory: is private to one process: a fleet needs postgresql:// (or sqlite:///)"
        )
        raise ValueError(msg)
    if scheme == "sqlite":
        view.note(
            "note: a SQLite store serves the workers of one host; across nodes use PostgreSQL"
        )
    consumer_from(args)  # no command, bad --slots: the same error the worker would give
    limit = slurm_seconds(args.time_limit) if args.time_limit else None
    if limit is not None and args.trial_time is not None and args.trial_time >= limit:
        msg = f"--trial-time {args.trial_time:g} s is not less than --time {args.time_limit}"
        raise ValueError(msg)


async def _check_timing(args: argparse.Namespace, view: View) -> None:
    """Say so when the scripts would be killed before the worker's grace is over."""
    if args.signal_before is not None and args.signal_before <= args.grace:
        view.note(
            f"note: --signal-before {args.signal_before} s is not more than --grace "
            f"{args.grace:g} s: trials may not finish checkpointing before the time limit"
        )
    limit = await kill_wait()
    if limit is not None and args.grace >= limit:
        view.note(
            f"note: --grace {args.grace:g} s is not less than Slurm's KillWait {limit:g} s: "
            "Slurm kills scripts still checkpointing by then, and the worker with them"
        )


async def _record_search(args: argparse.Namespace, view: View, plan: SearchPlan) -> None:
    """Record the experiment's version with its search, as ``run`` would, for the workers."""
    args.search_plan = plan.to_json()
    async with store_from_url(args.store) as store:
        chosen = await experiment_version(args, store, run_options)
    plan = SearchPlan.from_json(args.search_plan)  # with what the experiment keeps
    if chosen.note:
        view.note(chosen.note)
    view.note(
        f"searching: {plan.n} trials, sampler {plan.sampler}, pruner {plan.pruner}, "
        f"over {', '.join(plan.space.names)} (experiment {args.experiment!r}, "
        f"version {chosen.version})"
    )


def _check_sbatch() -> None:
    if shutil.which("sbatch") is None:
        msg = "sbatch not found: run launch slurm on a Slurm login node (or use --dry-run)"
        raise LaunchError(msg)


async def _submit(script: Path) -> str:
    _check_sbatch()
    done = await anyio.run_process(["sbatch", "--parsable", str(script)], check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        msg = f"sbatch refused {script}: {reason[-1] if reason else done.returncode}"
        raise LaunchError(msg)
    return done.stdout.decode().strip().split(";")[0]


async def launch(args: argparse.Namespace, view: View) -> int:
    """
    Write the fleet's batch script; print it (``--dry-run``) or submit it and print the job id.

    With priors in the command, the search (its space, sampler, pruner, ``-n``) is recorded in
    the store first, as ``run`` records it: each worker reads it there and suggests.
    """
    plan = searching.plan_of(args)  # a bad prior: nothing recorded, nothing submitted
    _check(args, view)
    script = batch_script(_spec(args))
    if args.dry_run:
        sys.stdout.write(script)
        if plan is not None:
            view.note("note: the search is recorded in the store when the job is submitted")
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.script or f".async-consumer/slurm/{args.job_name}-{stamp}.sbatch")
    await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    await anyio.Path(path).write_text(script)
    await _check_timing(args, view)
    if plan is not None:
        _check_sbatch()  # nothing recorded where nothing can be submitted
        await _record_search(args, view, plan)
    job_id = await _submit(path)
    print(job_id, flush=True)
    watch = f"async-consumer status --store {args.store}"
    if args.experiment != "default":
        watch += f" --experiment {shlex.quote(args.experiment)}"
    view.note(
        f"submitted {args.workers} workers as Slurm job {job_id} (script: {path}); "
        f"watch them with: {watch}"
    )
    return 0
