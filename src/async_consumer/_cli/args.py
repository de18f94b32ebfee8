"""
The command line's parser: its global options, and the commands ``run``, ``add`` and ``worker``
(the reading commands' parsers: ``read_args.py``; ``launch``'s: ``launch_args.py``).

The parser alone: it imports nothing of the library, so that ``--help`` and a usage error cost
only Python's start-up (the consumer the options describe: ``consumer_setup.py``).
"""

from __future__ import annotations

import argparse
from typing import cast

from .argtypes import count, cpus, positive_int, seconds, size
from .launch_args import add_launch_parser, add_trial_time
from .parser import Parser, Version
from .read_args import (
    add_reading_commands,
    experiment_option,
    json_option,
    maximize_option,
    store_option,
)

__all__ = ["build_parser", "run_options"]

DESCRIPTION = (
    "async-consumer: run a black-box script once per hyperparameter trial, asynchronously."
)
"""The command's one-line description (the first line of the package's docstring too)."""


def _add_global_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v`` and ``-q``: before the command, or after it (then they count from there)."""
    # after the command, a flag's default is no value at all, so the one before it stands
    default = 0 if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=default, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="less output")


def _add_global_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _add_global_flags(sub, top=False)
                _add_global_flags_everywhere(sub)


def _add_trial_options(parser: argparse.ArgumentParser) -> None:
    trials = parser.add_argument_group("trials")
    trials.add_argument(
        "--params",
        metavar="FILE",
        help="parameters: one JSON object a line (.jsonl), or a .csv with a header",
    )
    _add_repeatable(
        trials, "--grid", "NAME=V1,V2", "a grid axis; repeat for more axes (every combination runs)"
    )
    experiment_option(trials)
    _add_repeatable(
        trials,
        "--slots-per-trial",
        "KIND=N",
        "slots each trial needs (default: 1 of each kind given with --slots)",
    )


def _add_repeatable(group: argparse._ActionsContainer, flag: str, metavar: str, text: str) -> None:
    """An option given once per value: a list of the values given, empty if none is."""
    group.add_argument(flag, action="append", default=[], metavar=metavar, help=text)


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    search = parser.add_argument_group("search (priors in the command: --lr~'loguniform(1e-5, 1)')")
    search.add_argument(
        "-n",
        "--max-trials",
        type=positive_int,
        metavar="N",
        help="the search's total number of trials, over every worker (default 100)",
    )
    search.add_argument(
        "--space",
        metavar="FILE",
        help="a YAML or JSON file of priors, e.g. lr: loguniform(1e-5, 1)",
    )
    search.add_argument(
        "--sampler",
        help="random, or with Optuna: tpe (the default then), cmaes, gp, qmc, grid",
    )
    search.add_argument("--seed", type=int, help="the sampler's seed (a reproducible search)")
    search.add_argument(
        "--pruner",
        help="with Optuna: median (the default then), asha, hyperband; or none",
    )
    search.add_argument(
        "--metric",
        metavar="KEY",
        help="the key of a metrics line the pruner reads (default: the objective's name)",
    )


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    how = parser.add_argument_group("how each trial runs")
    how.add_argument(
        "-j", "--jobs", type=positive_int, default=1, help="trials at once (default 1)"
    )
    how.add_argument("--timeout", type=seconds, help="seconds a trial may run")
    how.add_argument(
        "--grace", type=float, default=5.0, help="seconds from SIGTERM to SIGKILL (default 5)"
    )
    how.add_argument(
        "--heartbeat",
        type=seconds,
        default=30.0,
        help="seconds between heartbeats; a trial is lost after 3 missed (default 30)",
    )
    how.add_argument(
        "--stall-timeout",
        type=seconds,
        help="stop a trial with no output or metrics for this long",
    )
    how.add_argument(
        "--max-broken", type=positive_int, help="start no more trials after this many broke"
    )
    outage = "seconds to wait for an unreachable store before giving up (default 300)"
    how.add_argument("--store-outage-limit", type=seconds, default=300.0, help=outage)
    how.add_argument(
        "--retries",
        type=count,
        default=0,
        help="retry a trial lost or killed by a signal up to this many times (default 0)",
    )
    _add_script_options(how)
    _add_limit_options(parser)
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="the command after --, with {placeholders}",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Limits per trial, and how its processes are kept together."""
    limits = parser.add_argument_group(
        "limits per trial (enforced by the kernel, through a cgroup for each trial)"
    )
    limits.add_argument("--memory", type=size, metavar="SIZE", help="memory, e.g. 2G")
    limits.add_argument("--cpus", type=cpus, metavar="N", help="CPUs' worth of time, e.g. 1.5")
    limits.add_argument("--pids", type=positive_int, metavar="N", help="processes, e.g. 512")
    limits.add_argument(
        "--containment",
        choices=["auto", "cgroup", "cgroup-v1", "cgroup-v2", "subreaper", "session"],
        default="auto",
        help="how no process outlives its trial (default auto: a cgroup where one can be "
        "made, else the subreaper; or $ASYNC_CONSUMER_CONTAINMENT)",
    )


def _add_script_options(how: argparse._ArgumentGroup) -> None:
    """The options about a script's slots, files, directory, environment and output."""
    _add_repeatable(
        how,
        "--slots",
        "KIND=ID,ID",
        "resources to share out, e.g. gpu=0,1,2,3 (seen as CUDA_VISIBLE_DEVICES)",
    )
    how.add_argument(
        "--config-template",
        metavar="FILE",
        help="JSON/YAML file rendered per trial to {config_file}",
    )
    how.add_argument(
        "--base-dir", default=".async-consumer/trials", help="where trial directories go"
    )
    how.add_argument(
        "--cd-trial-dir", action="store_true", help="run each script in its trial directory"
    )
    how.add_argument(
        "--code-change",
        choices=["warn", "error", "ignore"],
        default="warn",
        help="when the script's git state changes during the run (default warn)",
    )
    how.add_argument(
        "--echo", action="store_true", help="show each script's output, prefixed with its trial id"
    )
    _add_repeatable(
        how,
        "--env-deny",
        "PATTERN",
        "keep variables matching PATTERN (e.g. 'PG*') from the scripts",
    )


def _add_worker_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker",
        help="run trials from a store until it is drained (many workers may share one store)",
        description="Pull trials from a store, run them and record their outcomes. Several "
        "workers, on one machine or many, can share a store; a dead worker's trials are re-run. "
        "Example: async-consumer worker --store postgresql://me@db/search -j 4 -- python "
        "train.py --lr {lr}",
    )
    store_option(worker, default=None)
    json_option(worker)
    _add_worker_options(worker)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    """A worker's options but ``--store`` and ``--json``: ``launch`` passes them on."""
    parser.add_argument(
        "--experiment",
        default="default",
        help="the experiment whose search the worker suggests for, if it is one (default: default)",
    )
    _add_resume_options(parser)
    maximize_option(parser)
    add_trial_time(parser)
    _add_execution_options(parser)


def _add_rerun_options(run: argparse.ArgumentParser) -> None:
    """``run --rerun`` and ``run --new-version``."""
    run.add_argument(
        "--rerun",
        metavar="STATUSES",
        help="run these trials again, as new attempts: broken, interrupted or "
        "broken,interrupted (earlier attempts are kept)",
    )
    _add_new_version(run)


def _add_launch_search(launch: argparse.ArgumentParser) -> None:
    """``launch``'s search options (recorded in the store, not passed to the workers)."""
    _add_search_options(launch)
    _add_new_version(launch)


def _add_new_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--new-version",
        action="store_true",
        help="start a new version of the experiment (e.g. after changing the "
        "command): every trial runs again, the old version's records are kept",
    )


def _add_resume_options(worker: argparse.ArgumentParser) -> None:
    """``worker --follow`` and how it resumes trials whose script interrupted itself."""
    worker.add_argument(
        "--follow",
        action="store_true",
        help="keep waiting for new trials, and resume interrupted ones",
    )
    worker.add_argument(
        "--resume-backoff",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="a trial whose script exited with the interrupt code waits this "
        "long before it is resumed, doubled each attempt (default 5)",
    )
    worker.add_argument(
        "--resume-max",
        type=seconds,
        default=300.0,
        metavar="SECONDS",
        help="the longest such wait (default 300)",
    )


def run_options() -> frozenset[str]:
    """The option strings of ``run`` (to recognise one given after ``--`` by mistake)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    return frozenset(o for a in run._actions for o in a.option_strings if o.startswith("--"))


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a script once per trial, here and now (resumable)",
        description="Run COMMAND once per trial and report the outcomes. Trials are kept in a "
        "store, so running the same command again resumes: completed trials are not run twice. "
        "Example: async-consumer run --params grid.jsonl -j 4 -- python train.py --lr {lr}",
    )
    _add_trial_options(run)
    _add_search_options(run)
    _add_rerun_options(run)
    store_option(run, default="sqlite:///.async-consumer/EXPERIMENT.db")
    json_option(run)
    maximize_option(run)
    _add_execution_options(run)


def build_parser() -> Parser:
    """The parser of ``async-consumer``."""
    parser = Parser(
        prog="async-consumer",
        description=DESCRIPTION,
        epilog="exit status: 0 all trials completed, 1 some did not, 2 bad usage, 130 interrupted",
    )
    _add_global_flags(parser, top=True)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    # the subcommands' parsers are Parsers too (errors, guesses); typed as their base
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND"),
    )
    _add_run_command(commands)
    add = commands.add_parser(
        "add",
        help="put trials in a store, for workers to run",
        description="Add trials to a store; trials already there are skipped. Example: "
        "async-consumer add --store postgresql://me@db/search --params trials.jsonl",
    )
    _add_trial_options(add)
    store_option(add, default=None)
    _add_worker_command(commands)
    add_launch_parser(commands, _add_worker_options, _add_launch_search)
    add_reading_commands(commands)
    _add_global_flags_everywhere(parser)
    return parser
