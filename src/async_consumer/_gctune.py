"""
An opt-in garbage-collector setting for a program that runs many trials at once.

Each running trial holds about 130 objects for its whole life (its task, cancel scopes, process
and transport) and each heartbeat makes a few that live until the next one. With Python's default
threshold of 700, those medium-lived objects are promoted to the oldest generation within
milliseconds, and a full collection follows every few seconds. A full collection walks every
live object with the event loop stopped: with 1,000 trials, 40 to 130 ms on this machine, which
makes every heartbeat due meanwhile that late.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def tune_gc(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """
    Set this process's garbage collector for many concurrent trials (process-wide, opt-in).

    Freezes the objects that exist now (modules, classes, the program's own set-up, which will
    not become garbage) so that no collection walks them again, and collects the youngest
    generation every ``young_threshold`` allocations instead of 700, so that a running trial's
    objects are not promoted and walked by full collections every few seconds. The
    ``async-consumer`` command calls it at start-up; a program embedding :class:`Consumer`
    with hundreds of trials at once may call it after its own set-up. Call it once.

    Raises:
        ValueError: ``young_threshold`` is not positive.
    """
    if young_threshold < 1:
        msg = f"young_threshold must be positive, not {young_threshold}"
        raise ValueError(msg)
    gc.collect()  # what is garbage now is collected, not frozen
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
