"""The progress bar of the command line, and its honest ETA."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["eta_text", "progress_bar"]


def eta_text(done: float, total: float | None, elapsed: float | None) -> str:
    """
    The time left at the run's average pace so far; ``?`` until a trial has finished.

    The average over the whole run, not a recent window: a few quick failures at the start
    (or the last trials finishing together) would make a window's estimate fall to seconds while
    long trials still run. Once the estimate has run out, it grows with the time spent waiting.
    """
    if not done or total is None or elapsed is None:
        return "?"
    left = max(total - done, 0) * elapsed / done
    seconds = int(left + 0.999)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_bar(running: Callable[[], int]) -> Progress | None:
    """A progress bar on stderr with a count of running trials; ``None`` without rich."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
        )
        from rich.text import Text
    except ImportError:
        return None

    class HonestEta(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(eta_text(task.completed, task.total, task.elapsed), style="cyan")

    class Running(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{running()} running", style="cyan")

    columns = (
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        Running(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("ETA"),
        HonestEta(),
    )
    return Progress(*columns, console=Console(stderr=True), transient=True)
