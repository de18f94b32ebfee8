"""The types of the command line's option values: counts and durations, checked."""

from __future__ import annotations

import argparse

__all__ = ["count", "cpus", "positive_int", "seconds", "size"]


def positive_int(text: str) -> int:
    """A whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of 1 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def count(text: str) -> int:
    """A whole number of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"expected a whole number of 0 or more, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"expected a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def size(text: str) -> int:
    """A size in bytes: ``512M``, ``2G`` (units of 1024), at least 1M."""
    from .._limits import parse_size

    try:
        value = parse_size(text)
    except ValueError:
        value = 0
    if value < 1 << 20:
        msg = f"expected a size of 1M or more such as 512M or 2G, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def cpus(text: str) -> float:
    """A positive number of CPUs (a fraction is a share of one)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        msg = f"expected a positive number of CPUs such as 0.5 or 2, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value
