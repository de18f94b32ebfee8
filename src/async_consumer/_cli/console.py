"""
The command line's log records and progress bar on one console, so neither tears the other.

While the progress bar is drawn, a record printed straight to stderr lands in the middle of the
bar's line and leaves a stale copy of the bar in the scrollback; records go through the bar's own
console instead, which prints above it. Outcomes are shown by the view, one line each, so the
records the library logs for them are not shown a second time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .view import View

__all__ = ["configure_logging"]


class _ViewHandler(logging.Handler):
    """Hands each record, formatted, to the view (above the progress bar while it shows)."""

    def __init__(self, view: View) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "outcome", None) is not None:
            return  # the view prints every outcome itself, once
        try:
            self.view.log(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


class _TrialFormatter(logging.Formatter):
    """``level trial-id: message``; records without a trial id leave it out."""

    def format(self, record: logging.LogRecord) -> str:
        trial = getattr(record, "trial_id", None)
        level = record.levelname.lower()
        return (f"{level} {trial}: " if trial else f"{level}: ") + record.getMessage()


def configure_logging(verbosity: int, view: View) -> None:
    """Show the library's records at a level set by ``-v``/``-q``, through ``view``."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < -1:
        level = logging.CRITICAL
    handler = _ViewHandler(view)
    handler.setFormatter(_TrialFormatter())
    root = logging.getLogger("async_consumer")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
