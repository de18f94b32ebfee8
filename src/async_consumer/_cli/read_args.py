"""
The parsers of the commands that read a store (``status``, ``trials``, ``show``, ``report``,
``logs``), and the options ``run`` shares with them: ``--store``, ``--experiment``, ``--json``
and ``--maximize``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .argtypes import count, positive_int

if TYPE_CHECKING:
    from typing import TypeAlias

    _Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = [
    "add_reading_commands",
    "experiment_option",
    "json_option",
    "maximize_option",
    "store_option",
]


def maximize_option(parser: argparse.ArgumentParser) -> None:
    """
    ``--maximize`` or ``--minimize`` (``args.maximize``: ``None`` when neither is given).

    The experiment's first run records the direction; later commands read it from the store,
    and a flag that contradicts it is refused.
    """
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--maximize",
        action="store_const",
        const=True,
        default=None,
        help="higher objectives are better (recorded with the experiment by its first run; "
        "later commands use the recorded direction)",
    )
    direction.add_argument(
        "--minimize",
        dest="maximize",
        action="store_const",
        const=False,
        help="lower objectives are better (the default)",
    )


def store_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--store``: required when it has no ``default`` (which its help then describes)."""
    parser.add_argument(
        "--store",
        required=default is None,
        metavar="URL",
        help="sqlite:///path.db, postgresql://user@host/db or memory:"
        + ("" if default is None else f" (default: {default})"),
    )


def experiment_option(parser: argparse._ActionsContainer) -> None:
    """``--experiment``: the experiment's name, which also names its default store."""
    parser.add_argument(
        "--experiment", default="default", help="experiment name (default: default)"
    )


def json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output."""
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output: one JSON object a line"
    )


def _reading_parser(
    commands: _Commands, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A reading command's parser, with the options that find its store."""
    parser = commands.add_parser(name, help=help, description=description)
    store_option(parser, "the store run uses here, sqlite:///.async-consumer/EXPERIMENT.db")
    experiment_option(parser)
    return parser


def all_versions_option(parser: argparse.ArgumentParser) -> None:
    """``--all-versions``: every trial in the store, not only the experiment's current version."""
    parser.add_argument(
        "--all-versions",
        action="store_true",
        help="every trial in the store, with its version (default: the experiment's current "
        "version only)",
    )


def _add_trials_command(commands: _Commands) -> None:
    trials = _reading_parser(
        commands,
        "trials",
        help="every trial: id, status, objective, attempts, duration and parameters",
        description="List the trials of a store, one a line; ids may be abbreviated "
        "elsewhere to any unique prefix. Example: async-consumer trials --sort objective "
        "--limit 10",
    )
    trials.add_argument(
        "--sort",
        default="added",
        metavar="KEY",
        help="added (default), id, status, objective (best first), attempts, "
        "duration, or a parameter's name",
    )
    trials.add_argument("--reverse", action="store_true", help="the other way round")
    all_versions_option(trials)
    trials.add_argument("--limit", type=positive_int, help="only the first N")
    shape = trials.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object a line")
    shape.add_argument("--csv", action="store_true", help="CSV, one column per parameter")
    maximize_option(trials)


def add_reading_commands(commands: _Commands) -> None:
    """The commands that read a store: status, trials, show, report, logs."""
    _add_status_and_show(commands)
    _add_report_command(commands)
    _add_trials_command(commands)
    _add_logs_command(commands)


def _add_status_and_show(commands: _Commands) -> None:
    status = _reading_parser(
        commands,
        "status",
        help="counts by status, the best trial so far, and the running trials",
        description="Count the experiment's trials by status (its current version; "
        "--all-versions for every one), name the best so far in the experiment's recorded "
        "direction, and list the running trials and the workers. "
        "Example: async-consumer status --experiment acc",
    )
    json_option(status)
    maximize_option(status)
    all_versions_option(status)
    show = _reading_parser(
        commands,
        "show",
        help="one trial: its attempts and the tail of its logs",
        description="Show one trial (its id or any unique prefix of it): status, parameters, "
        "objective and other results, every attempt with its duration, the command line, and "
        "the end of its logs. Example: async-consumer show 5c1e",
    )
    json_option(show)
    show.add_argument("trial_id", metavar="ID", help="the trial's id")


def _add_report_command(commands: _Commands) -> None:
    report = _reading_parser(
        commands,
        "report",
        help="write one self-contained HTML page: timeline, objective by trial, failures",
        description="Write an HTML picture of the run (no network needed to view it): the "
        "experiment's current version, or --all-versions. "
        "Example: async-consumer report -o report.html",
    )
    report.add_argument(
        "-o",
        "--output",
        default="report.html",
        metavar="FILE",
        help="where to write it (default: report.html)",
    )
    report.add_argument("--title", default="async-consumer run", help="the page's title")
    maximize_option(report)
    all_versions_option(report)


def _add_logs_command(commands: _Commands) -> None:
    logs = _reading_parser(
        commands,
        "logs",
        help="print a trial's stdout (or stderr) log",
        description="Print a trial's stdout (or --stderr) log as it is: its last attempt's, "
        "or --attempt N's; --tail N for the last lines, --follow while it runs. "
        "Example: async-consumer logs 5c1e --stderr --tail 20",
    )
    logs.add_argument("trial_id", metavar="ID", help="the trial's id")
    logs.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    logs.add_argument("--attempt", type=positive_int, help="which attempt (default: the last)")
    logs.add_argument(
        "--tail", type=count, metavar="N", help="only the last N lines (then --follow, if given)"
    )
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing what a running attempt appends, until it ends",
    )
    logs.add_argument(
        "--base-dir",
        default=".async-consumer/trials",
        help="where the run keeps trial directories (to find a running attempt's log)",
    )
