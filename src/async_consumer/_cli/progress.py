"""
The progress bar of the command line, and its honest ETA.

The bar is drawn from the event loop, ten times a second, never from a thread of its own or once
per outcome: every line printed above a live bar makes rich lay the bar out again, which cost
more than the rest of a run's own work with trials of a few milliseconds. So the outcome lines of
a tenth of a second are printed together, just before the bar is redrawn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

__all__ = ["REDRAW_EVERY", "LiveBar", "eta_text", "progress_bar"]

REDRAW_EVERY = 0.1
"""Seconds between two redraws of the bar; an outcome's line waits at most this long."""


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
        from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
        from rich.progress import Progress
    except ImportError:
        return None

    class AsItIsNow:
        """The bar laid out when drawn: a line printed above it shows it up to date."""

        def __init__(self, bar: Progress) -> None:
            self.bar = bar

        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            yield from self.bar.get_renderables()

    class DrawnWhenPrinted(Progress):
        # rich keeps what the last refresh laid out and draws that below every line printed
        def get_renderable(self) -> RenderableType:
            return AsItIsNow(self)

    # drawn by LiveBar.redraw_while, not by a thread of rich's
    return DrawnWhenPrinted(
        *_columns(running), console=Console(stderr=True), transient=True, auto_refresh=False
    )


def _columns(running: Callable[[], int]) -> tuple[ProgressColumn, ...]:
    """The bar's columns: trials done of all, running, failed, and the honest ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, Task, TextColumn
    from rich.text import Text

    class HonestEta(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(eta_text(task.completed, task.total, task.elapsed), style="cyan")

    class Running(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{running()} running", style="cyan")

    return (
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        Running(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("ETA"),
        HonestEta(),
    )


class LiveBar:
    """
    A progress bar on the terminal and the lines printed above it, drawn at a bounded rate.

    Args:
        bar: a started bar that is laid out when drawn (see :func:`progress_bar`).
        total: the trials to run.
    """

    def __init__(self, bar: Progress, total: int) -> None:
        self.bar = bar
        self.task = bar.add_task("trials", total=total, failed=0)
        self._lines: list[str] = []

    def line(self, text: str) -> None:
        """Print a line above the bar at the next redraw."""
        self._lines.append(text)

    def log(self, text: str) -> None:
        """Print a line above the bar now (the lines waiting before it first)."""
        self.flush()
        self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def advance(self, failed: int) -> None:
        """One more trial ended; ``failed`` of them did not complete."""
        self.bar.update(self.task, advance=1, failed=failed)

    def flush(self) -> None:
        """Print the waiting lines above the bar, together (the bar is drawn again below them)."""
        if self._lines:
            text = "\n".join(self._lines)
            self._lines.clear()
            self.bar.console.print(text, markup=False, highlight=False)

    async def redraw_while(self, work: Callable[[], Awaitable[None]]) -> None:
        """Await ``work()`` while the waiting lines and the bar are drawn every ``REDRAW_EVERY`` s."""
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._redraw_forever)
            try:
                await work()
            except Exception as exc:  # noqa: BLE001 - raised below as itself, not in a group
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _redraw_forever(self) -> None:
        while True:
            await anyio.sleep(REDRAW_EVERY)
            if self._lines:
                self.flush()  # the bar is drawn below them, as it is now: laid out once
            else:
                self.bar.refresh()
