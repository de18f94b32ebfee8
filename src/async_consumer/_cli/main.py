"""
The ``async-consumer`` command.

Exit status: 0 when every trial completed, 1 when some did not (or on a library error),
2 for bad usage or bad input, 130 when interrupted by SIGINT or SIGTERM.

Each command imports the modules it runs when it is chosen, after the arguments are parsed:
``--help`` and a usage error cost only Python's start-up, and ``run`` imports neither the
report's charts, nor Slurm's scripts, nor the terminal's drawing (rich, when it draws).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from .._gctune import tune_gc
from .args import build_parser
from .parser import parse_command_line

if TYPE_CHECKING:
    from .view import View

__all__ = ["console", "main"]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130  # 0: the commands' own (work.py)
EXIT_BROKEN_PIPE = 141
"""What a shell shows for a command that its reader left (128 + SIGPIPE), as ``head`` does."""

Command = Callable[[argparse.Namespace, "View"], Awaitable[int]]


def _command(name: str) -> Command:
    """The coroutine function of the command ``name``, its modules imported now."""
    if name in ("run", "add", "worker"):
        from . import work

        return {"run": work.run, "add": work.add, "worker": work.worker}[name]
    if name == "launch":
        from .launch import launch

        return launch
    from . import read_commands

    reading: dict[str, Command] = {
        "status": read_commands.status,
        "show": read_commands.show,
        "logs": read_commands.logs,
        "report": read_commands.report,
        "trials": read_commands.trials,
    }
    return reading[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parse_command_line(parser, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import anyio

    from .._errors import ConsumerError
    from .console import configure_logging
    from .trial_params import SourceError
    from .usage_checks import UsageError
    from .view import View

    command = _command(args.command)
    if gc.get_freeze_count():  # the collector was tuned (console): freeze the modules just imported
        gc.freeze()
    view = View(
        json_output=getattr(args, "json", False),
        quiet=args.quiet > 0,
        maximize=bool(getattr(args, "maximize", None)),  # the experiment's own, once read
    )
    configure_logging(args.verbose - args.quiet, view)
    try:
        return anyio.run(command, args, view)
    except (UsageError, SourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, ConsumerError, OSError) as exc:
        return _ended_by(exc)
    except BaseExceptionGroup as group:  # from a worker's lanes: the first error, on one line
        first = _first_error(group)
        if not isinstance(first, KeyboardInterrupt | ConsumerError | OSError):
            raise
        return _ended_by(first)


def _ended_by(exc: BaseException) -> int:
    """The exit status of a command that ``exc`` ended, after its one line (if any)."""
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C before the command's own handler
        # a connection cut short by it (asyncpg's, mid-handshake) may leave a future whose
        # error asyncio reports when it is collected: the one line below says it all
        import logging

        logging.getLogger("asyncio").disabled = True
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # `status | head -4`: the reader has what it wanted
        return _left_by_reader()
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _left_by_reader() -> int:
    """Leave quietly when stdout's reader has gone: no error, nothing flushed at exit."""
    # the interpreter flushes stdout as it exits: into /dev/null, not into the closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in a (nested) exception group."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def console() -> int:
    """The ``async-consumer`` command: :func:`main`, in a process set up for many trials."""
    tune_gc()
    return main()
