"""
The command line's parser: a usage error is the error first, then one usage line; a misspelt
option gets a guess; ``--version`` looks the version up only when asked.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["Parser", "Version", "parse_command_line"]


class Parser(argparse.ArgumentParser):
    """
    A parser whose usage error is the error first, then one usage line (not ten), and which
    guesses the option a misspelt one meant.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``error: MESSAGE`` and this command's one usage line; exit 2."""
        self.exit(2, f"error: {message}\n{self.usage_line()}\n")

    def usage_line(self) -> str:
        """``usage: async-consumer run [options] [-- COMMAND]  (--help for more)``."""
        takes_command = any(a.dest == "argv" for a in self._actions)
        commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        shape = " [options]" + (" -- COMMAND" if takes_command else "")
        shape += " COMMAND ..." if commands else ""
        shape += "".join(f" {a.metavar or a.dest.upper()}" for a in self._operands())
        return f"usage: {self.prog}{shape}   ({self.prog} --help for more)"

    def _operands(self) -> list[argparse.Action]:
        return [
            a
            for a in self._actions
            if not a.option_strings
            and a.dest != "argv"
            and not isinstance(a, argparse._SubParsersAction)
        ]

    def options(self) -> list[str]:
        """Every option string this parser takes."""
        return [o for a in self._actions for o in a.option_strings]


def _guess(unknown: str, options: Sequence[str]) -> str:
    """What a misspelt option probably meant (``--jobs4``: ``--jobs 4``), or ""."""
    if not unknown.startswith("-"):
        return ""
    name = unknown.split("=", 1)[0]
    for option in sorted(options, key=len, reverse=True):  # a value glued to its option
        if option.startswith("--") and name.startswith(option) and name != option:
            return f"{option} {unknown[len(option) :]}"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.75)
    return close[0] if close else ""


def _chosen(parser: Parser, args: argparse.Namespace) -> Parser:
    """The (sub)command's own parser that ``args`` went through."""
    chosen = parser
    for dest in ("command", "scheduler"):
        commands = [a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, dest, None)
        if not commands or name is None or name not in commands[0].choices:
            break
        sub = commands[0].choices[name]
        chosen = sub if isinstance(sub, Parser) else chosen
    return chosen


def parse_command_line(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """
    Parse ``argv``: an unknown option is an error of its command, with a guess at what was
    meant ("did you mean --maximize?").
    """
    args, extras = parser.parse_known_args(argv)
    if extras:
        chosen = _chosen(parser, args)
        guesses = [g for g in (_guess(e, chosen.options()) for e in extras) if g]
        hint = f" (did you mean {guesses[0]}?)" if guesses else ""
        chosen.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return args


class Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("async-consumer")
        except PackageNotFoundError:  # run from a source tree, not installed
            number = "unknown"
        print(f"async-consumer {number}")
        parser.exit()
