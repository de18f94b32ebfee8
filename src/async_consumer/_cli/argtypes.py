"""The types of the command line's option values: counts and durations, checked."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

__all__ = ["count", "cpus", "positive_int", "seconds", "size"]

_N = TypeVar("_N", int, float)


def positive_int(text: str) -> int:
    """A whole number of 1 or more."""
    return _checked(text, int, lambda n: n >= 1, "a whole number of 1 or more")


def count(text: str) -> int:
    """A whole number of 0 or more."""
    return _checked(text, int, lambda n: n >= 0, "a whole number of 0 or more")


def seconds(text: str) -> float:
    """A positive number of seconds."""
    return _checked(text, float, lambda n: n > 0, "a positive number of seconds")


def size(text: str) -> int:
    """A size in bytes: ``512M``, ``2G`` (units of 1024), at least 1M."""
    from .._limits import parse_size

    expected = "a size of 1M or more such as 512M or 2G"
    return _checked(text, parse_size, lambda n: n >= 1 << 20, expected)


def cpus(text: str) -> float:
    """A positive number of CPUs (a fraction is a share of one)."""
    expected = "a positive number of CPUs such as 0.5 or 2"
    return _checked(text, float, lambda n: 0 < n < float("inf"), expected)


def _checked(
    text: str, parse: Callable[[str], _N], is_ok: Callable[[_N], bool], expected: str
) -> _N:
    """
    ``text`` parsed, if it parses to a value that ``is_ok``.

    Raises:
        argparse.ArgumentTypeError: it does not (saying what was ``expected``).
    """
    try:
        value = parse(text)
    except ValueError:
        pass
    else:
        if is_ok(value):
            return value
    msg = f"expected {expected}, not {text!r}"
    raise argparse.ArgumentTypeError(msg)
