"""The types of the command line's option values: counts and durations, checked."""

from __future__ import annotations

import argparse

__all__ = ["count", "positive_int", "seconds"]


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
