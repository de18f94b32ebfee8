"""What the command line shows: a line per trial, a progress bar, summaries, JSON on request."""

from __future__ import annotations

import json
import shlex
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._fleet import WorkerInfo
from .._models import Outcome, Status, StoredTrial, Trial, TrialStatus
from .._supervise.lines import tail
from .advice import plural
from .fleet_view import worker_lines, worker_rows
from .progress import LiveBar, progress_bar

if TYPE_CHECKING:
    from .._worker.worker import Worker

__all__ = ["SearchShown", "View"]


class SearchShown(NamedTuple):
    """What ``status`` shows of a search: its total, sampler and pruner."""

    n: int
    sampler: str
    pruner: str

    def line(self, suggested: int) -> str:
        """The search's line of ``status``, ``suggested`` of its trials being in the store."""
        return (
            f"search: {suggested} of {self.n} trials suggested "
            f"(sampler {self.sampler}, pruner {self.pruner})"
        )


_MARK = {"completed": "ok", "interrupted": "--", "lost": "??"}


_PARAMS_WIDTH = 60
"""The most of a per-trial line that its parameters take (longer ones are cut, with ...)."""


def _params_text(params: Mapping[str, Any] | None, width: int = _PARAMS_WIDTH) -> str:
    """``lr=0.01 layers=2``, cut to ``width`` characters."""
    if not params:
        return ""
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 3] + "..."


def _why(reason: str | None, message: str, between: str = ": ") -> str:
    """``reason: message``, or the message alone where it starts with the reason (pruned)."""
    if not reason or message.startswith(reason):
        return message
    return f"{reason}{between}{message}"


def _line(outcome: Outcome, params: Mapping[str, Any] | None = None) -> str:
    mark = _MARK.get(outcome.status, "!!")
    duration = f"{outcome.duration:.2f}s" if outcome.duration is not None else "-"
    if outcome.is_completed:
        detail = f"objective={outcome.objective:g}" if outcome.objective is not None else ""
    else:
        detail = _why(outcome.reason, outcome.message).splitlines()[0]
        last = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-1:]
        if outcome.status is Status.BROKEN and last:  # the script's own last word, e.g. the error
            detail += f" | {last[0].strip()}"
        detail = detail[:200]
    shown = _params_text(params)
    head = f"{mark} {outcome.trial_id} #{outcome.attempt} {outcome.status:<11} {duration:>8}"
    return f"{head}  {shown}  {detail}" if shown else f"{head}  {detail}"


def _params(stored: StoredTrial) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in stored.trial.params.items())


def _best_line(best: StoredTrial) -> str:
    """The best trial in a line: its id, objective and parameters."""
    objective = best.outcome.objective if best.outcome is not None else None
    shown = "none" if objective is None else f"{objective:g}"  # a best trial has one
    return f"best: {best.id} objective={shown}  {_params(best)}"


def _best_json(best: StoredTrial | None) -> dict[str, Any] | None:
    """The best trial as a summary's or a status's JSON gives it."""
    if best is None:
        return None
    objective = best.outcome.objective if best.outcome is not None else None
    return {"trial_id": best.id, "objective": objective, "params": best.trial.params}


def _nonzero(counts: Mapping[TrialStatus, int]) -> Counter[str]:
    """The statuses some trial is in, by name, as a summary shows them."""
    return Counter({str(status): n for status, n in counts.items() if n})


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return f"{(datetime.now(UTC) - moment).total_seconds():.0f}s"


def _table(
    counts: Counter[str], best: StoredTrial | None, slowest: Sequence[Outcome], ran: int
) -> bool:
    """A summary table on a terminal, if rich is installed; ``False`` if it is not."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    total = sum(counts.values())
    title = f"{plural(total, 'trial')} ({ran} run now)"
    table = Table(title=title, show_header=False, title_justify="left")
    for status in TrialStatus:
        if counts.get(str(status)):
            table.add_row(str(status), str(counts[str(status)]))
    if best is not None and best.outcome is not None:
        table.add_row("best", f"{best.id}  objective={best.outcome.objective:g}  {_params(best)}")
    for o in slowest:
        table.add_row("slow", f"{o.trial_id}  {o.duration or 0.0:.1f} s  {o.status}")
    Console().print(table)
    return True


class View:
    """Writes results to stdout and notes to stderr; JSON lines instead when asked."""

    def __init__(
        self, *, json_output: bool = False, quiet: bool = False, maximize: bool = False
    ) -> None:
        self.json = json_output
        self.quiet = quiet
        self.maximize = maximize
        self.trial_of: Callable[[str], Trial | None] = lambda _: None
        """The trial of an outcome about to be shown (its parameters go in its JSON line)."""
        self._bar: LiveBar | None = None
        self._counts: Counter[str] = Counter()

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.line(text)  # above the bar, with the others of its tenth of a second
        else:
            print(text, flush=True)

    def log(self, text: str) -> None:
        """A log record's line: above the progress bar while it shows, else on stderr."""
        if self._bar is not None:
            self._bar.log(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (nothing for an empty one)."""
        if text and not self.quiet and not self.json:
            self.log(text)

    def outcome(self, outcome: Outcome) -> None:
        """One finished trial."""
        self._counts[outcome.status] += 1
        if self.json:
            line = outcome.model_dump(mode="json", exclude={"env"})
            trial = self.trial_of(outcome.trial_id)
            self._print(json.dumps(line if trial is None else {**line, "params": trial.params}))
        elif not self.quiet:
            trial = self.trial_of(outcome.trial_id)  # which parameters, e.g. which lr broke
            self._print(_line(outcome, trial.params if trial is not None else None))
        if self._bar is not None:
            self._bar.advance(sum(n for s, n in self._counts.items() if s != "completed"))

    @contextmanager
    def progress(
        self,
        counts: dict[TrialStatus, int],
        running: Callable[[], int] = lambda: 0,
        *,
        total: int | None = None,
    ) -> Iterator[None]:
        """
        A progress bar on the terminal (stderr) while trials run; nothing when piped. Its
        total: ``total`` (a search's trials still to run, suggested or not), else the trials
        waiting in ``counts``.
        """
        if total is None:
            total = sum(counts.get(s, 0) for s in (TrialStatus.NEW, TrialStatus.INTERRUPTED))
        if self.json or self.quiet or not sys.stderr.isatty() or total == 0:
            yield
            return
        bar = progress_bar(running)
        if bar is None:  # the cli extra is not installed: plain lines only
            yield
            return
        with bar:
            self._bar = LiveBar(bar, total)
            try:
                yield
            finally:
                self._bar.flush()
                self._bar = None

    async def redraw_while(self, work: Callable[[], Awaitable[None]]) -> None:
        """Await ``work()``, drawing the progress bar meanwhile if it shows."""
        if self._bar is None:
            await work()
        else:
            await self._bar.redraw_while(work)

    def summary(
        self, by_status: Mapping[TrialStatus, int], best: StoredTrial | None, worker: Worker
    ) -> None:
        """Counts by status, the best trial, the slowest ones."""
        counts = _nonzero(by_status)
        slowest = worker.slowest
        if self.json:
            summary: dict[str, Any] = {
                "counts": dict(counts),
                "ran": worker.ran,
                "rejected": worker.rejected,
                "best": _best_json(best),
            }
            print(json.dumps({"summary": summary}), flush=True)
            return
        drawn = sys.stdout.isatty() and not self.quiet and _table(counts, best, slowest, worker.ran)
        if not drawn:  # piped, or without rich: plain lines
            self._plain_summary(counts.total(), counts, best, slowest, worker.ran)
        if worker.rejected:
            print(
                f"{plural(worker.rejected, 'late result')} rejected (another worker had the trial)",
                flush=True,
            )

    def _plain_summary(
        self,
        total: int,
        counts: Counter[str],
        best: StoredTrial | None,
        slowest: Sequence[Outcome],
        ran: int,
    ) -> None:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        print(f"{plural(total, 'trial')}: {parts} ({ran} run now)", flush=True)
        if best is not None:
            print(_best_line(best), flush=True)
        if slowest and not self.quiet:
            text = ", ".join(f"{o.trial_id} {o.duration:.1f}s" for o in slowest)
            print(f"slowest: {text}", flush=True)

    def status(
        self,
        by_status: Mapping[TrialStatus, int],
        running: Sequence[StoredTrial],
        workers: Sequence[WorkerInfo] = (),
        *,
        best: StoredTrial | None = None,
        search: SearchShown | None = None,
    ) -> None:
        """Counts by status, a search's total, the best and running trials, the workers."""
        counts = _nonzero(by_status)
        if self.json:
            rows = [
                {
                    "trial_id": s.id,
                    "worker": s.worker,
                    "heartbeat_at": s.heartbeat_at and s.heartbeat_at.isoformat(),
                }
                for s in running
            ]
            fleet = worker_rows(workers)
            state = {"counts": dict(counts), "best": _best_json(best), "running": rows}
            if search is not None:
                state["search"] = {"n": search.n, "suggested": sum(by_status.values())}
            print(json.dumps({**state, "workers": fleet}), flush=True)
            return
        for status in TrialStatus:
            print(f"{status:<12}{counts.get(str(status), 0):>8}")
        if search is not None:
            print(f"\n{search.line(sum(by_status.values()))}")
        if best is not None:
            print(f"\n{_best_line(best)}")
        if running:
            print("\nrunning:")
            for s in running:
                print(f"  {s.id}  worker={s.worker}  heartbeat {_age(s.heartbeat_at)} ago")
        lines = worker_lines(workers)
        if lines:
            print("\n" + "\n".join(lines), flush=True)

    def show(self, stored: StoredTrial) -> None:
        """One trial: status, parameters, every attempt, and the end of the last one's logs."""
        if self.json:
            print(stored.model_dump_json(), flush=True)
            return
        print(f"trial {stored.id}: {stored.status}  (lost {stored.lost_count} times)")
        print(f"params: {_params(stored)}")
        last = stored.outcome
        if last is not None and last.is_completed:
            objective = "none" if last.objective is None else f"{last.objective:g}"
            print(f"objective: {objective}")
            others = {r.name: r.value for r in last.results if r.type != "objective"}
            if others:
                print(f"results: {' '.join(f'{k}={json.dumps(v)}' for k, v in others.items())}")
        for attempt in stored.attempts:
            o = attempt.outcome
            how = "running" if o is None else f"{o.status} {_why(o.reason, o.message, ' ')}".strip()
            took = "" if o is None or o.duration is None else f" ({o.duration:.2f}s)"
            print(
                f"  attempt {attempt.number} on {attempt.worker} at "
                f"{attempt.reserved_at:%Y-%m-%d %H:%M:%S}{took}: {how}"
            )
        if last is not None and last.argv:
            print(f"argv: {shlex.join(last.argv)}")
        if last is not None:
            for name, path in (("stdout", last.stdout_path), ("stderr", last.stderr_path)):
                text = tail(Path(path), 2048) if path else ""
                if text:
                    print(f"--- {name} ({path}) ---\n{text.rstrip()}")
            if last.status is not Status.COMPLETED and last.stderr_tail and not last.stderr_path:
                print(last.stderr_tail)
