"""
A picture of the run: one self-contained HTML page, no network needed to open it.

The page shows how many trials ended how, the best objective and its parameters, every attempt on
a timeline by concurrency lane (or slot), the objective by trial in completion order, and a table
of the attempts that failed with their reason and the tail of their stderr. Everything a script
could have written (ids, parameters, messages, stderr) is escaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

import anyio.to_thread

from .._models import Attempt, Outcome, Reason, Status, StoredTrial, TrialStatus
from .._ranking import best_trial, objective_of
from .charts import COLOURS, Point, Span, duration_text, objective_svg, timeline_svg
from .page import page
from .params import params_svg
from .results import completed_later, labelled, statistics

if TYPE_CHECKING:
    from ..stores import TrialStore

__all__ = ["render_report", "write_report"]

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CARDS = (
    (TrialStatus.COMPLETED, "completed", COLOURS["completed"]),
    (TrialStatus.BROKEN, "broken", COLOURS["broken"]),
    (TrialStatus.INTERRUPTED, "interrupted", COLOURS["interrupted"]),
    (TrialStatus.PRUNED, "pruned", "#8e6bbf"),
    (TrialStatus.RESERVED, "running", COLOURS["running"]),
    (TrialStatus.NEW, "waiting", "#c3c8d0"),
)
_MAX_FAILURES = 500


def _seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clean(text: str) -> str:
    """Terminal output made readable: colours dropped, each ``\\r`` overwrite kept at its last."""
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in _ANSI.sub("", text).split("\n")]
    return _CONTROL.sub("\ufffd", "\n".join(lines)).strip("\n")


def _params(trial: StoredTrial) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in trial.trial.params.items())


def _status(trial: StoredTrial, attempt: Attempt) -> str:
    if attempt.outcome is not None:
        return attempt.outcome.status.value
    is_latest = attempt is trial.attempts[-1]
    return "running" if is_latest and trial.status is TrialStatus.RESERVED else "lost"


def _times(attempt: Attempt) -> tuple[float, float | None]:
    """When an attempt started, and when it ended (``None`` while it runs)."""
    outcome = attempt.outcome
    start = _seconds(outcome.started_at if outcome and outcome.started_at else attempt.reserved_at)
    if outcome is not None and outcome.ended_at is not None:
        return start, _seconds(outcome.ended_at)
    if outcome is not None:  # reclaimed by the store: it ended at its last heartbeat
        return start, _seconds(attempt.heartbeat_at) if attempt.heartbeat_at else start
    return start, None


def _where(attempt: Attempt) -> str:
    outcome = attempt.outcome
    host = (outcome.host if outcome else "") or attempt.host
    place = f"worker {attempt.worker}" + (f" on {host}" if host else "")
    slots = outcome.slots if outcome else {}
    return place + "".join(f" · {kind} {','.join(ids)}" for kind, ids in sorted(slots.items()))


def _slot(outcome: Outcome | None) -> str:
    if outcome is None or not any(outcome.slots.values()):
        return ""
    kind, ids = min((kind, ids) for kind, ids in outcome.slots.items() if ids)
    return f"{kind} {ids[0]}"


def _span(trial: StoredTrial, attempt: Attempt, start: float, end: float) -> Span:
    reason = attempt.outcome.reason if attempt.outcome else None
    return Span(
        trial_id=trial.id,
        attempt=attempt.number,
        status=_status(trial, attempt),
        reason=reason.value if reason else "",
        worker=attempt.worker,
        slot=_slot(attempt.outcome),
        where=_where(attempt),
        start=start,
        end=end,
    )


def _spans(trials: Sequence[StoredTrial]) -> tuple[list[Span], float, float]:
    """Every attempt as a span from the first start, the first start, and the latest time known."""
    rows = [(t, a, *_times(a)) for t in trials for a in t.attempts]
    if not rows:
        return [], 0.0, 0.0
    origin = min(start for _, _, start, _ in rows)
    beats = [_seconds(a.heartbeat_at) for _, a, _, _ in rows if a.heartbeat_at]
    horizon = max([s for _, _, s, _ in rows] + [e for *_, e in rows if e is not None] + beats)
    spans = [_span(t, a, s - origin, (horizon if e is None else e) - origin) for t, a, s, e in rows]
    return spans, origin, horizon


def _points(trials: Sequence[StoredTrial]) -> list[tuple[Point, StoredTrial]]:
    """Completed attempts with an objective, in the order they ended."""
    done = []
    for trial in trials:
        for attempt in trial.attempts:
            outcome = attempt.outcome
            if outcome is None or outcome.status is not Status.COMPLETED:
                continue
            if outcome.objective is not None:
                end = _seconds(outcome.ended_at or attempt.heartbeat_at or attempt.reserved_at)
                point = Point(trial.id, outcome.objective, labelled(trial, outcome))
                done.append((end, point, trial))
    done.sort(key=lambda row: row[0])
    return [(point, trial) for _, point, trial in done]


def _header(trials: Sequence[StoredTrial], best: tuple[Point, StoredTrial] | None) -> str:
    counts = Counter(trial.status for trial in trials)
    cards = [
        f'<div class="card" data-status="{label}"{" data-zero" * (not counts[status])} '
        f'style="--c:{colour}">'
        f'<div class="num">{counts[status]}</div><div class="label">{label}</div></div>'
        for status, label, colour in _CARDS
        if counts[status] or status is not TrialStatus.PRUNED  # pruned: a search's only
    ]
    if best is None:
        cards.append(
            '<div class="card best"><div class="label">best objective</div>'
            '<div class="muted">none yet</div></div>'
        )
    else:
        point, trial = best
        chips = "".join(
            f'<span class="chip">{escape(k)} = {escape(json.dumps(v)[:80])}</span>'
            for k, v in trial.trial.params.items()
        )
        stats = statistics(trial.outcome) if trial.outcome is not None else {}
        chips += "".join(
            f'<span class="chip result">{escape(k)}: {escape(json.dumps(v)[:80])}</span>'
            for k, v in stats.items()
        )
        cards.append(
            f'<div class="card best"><div class="label">best objective</div>'
            f'<div class="num" id="best-objective">{point.objective:.6g}</div>'
            f'<div class="trial-id">{escape(trial.id)}</div><div class="chips">{chips}</div></div>'
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _failure_row(trial: StoredTrial, attempt: Attempt, outcome: Outcome) -> str:
    reason = outcome.reason.value if outcome.reason else ""
    if outcome.signal:
        reason += f" ({outcome.signal})"
    elif outcome.returncode is not None and outcome.reason is Reason.EXIT_CODE:
        reason += f" ({outcome.returncode})"
    tail = _clean(outcome.stderr_tail)
    stderr = f'<div class="tail"><pre>{escape(tail)}</pre></div>' if tail else "—"
    status = outcome.status.value
    later = completed_later(trial, attempt)
    return (
        f'<tr data-status="{status}"><td class="trial-id">{escape(trial.id)}</td>'
        f'<td class="n">{attempt.number}</td><td><span class="badge" style="--c:'
        f'{COLOURS[status]}">{status}</span>{later}</td><td>{escape(reason)}</td>'
        f'<td class="message">{escape(_clean(outcome.message))}</td><td>{stderr}</td></tr>'
    )


def _failures(trials: Sequence[StoredTrial]) -> str:
    failed = [
        (t, a, a.outcome)
        for t in trials
        for a in t.attempts
        if a.outcome is not None and a.outcome.status is not Status.COMPLETED
    ]
    if not failed:
        return '<p class="empty">No attempt failed.</p>'
    rows = "".join(_failure_row(*row) for row in failed[:_MAX_FAILURES])
    more = len(failed) - _MAX_FAILURES
    note = f'<p class="muted">…and {more} more (see <code>async-consumer show</code>).</p>'
    return (
        '<table class="failures"><thead><tr><th>trial</th><th>attempt</th><th>status</th>'
        "<th>reason</th><th>message</th><th>stderr (tail)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{note if more > 0 else ''}"
    )


def _legend(spans: Sequence[Span]) -> str:
    counts = Counter(span.status for span in spans)
    return "".join(
        f'<span class="key"><i style="background:{colour}"></i>{status} {counts[status]}</span>'
        for status, colour in COLOURS.items()
    )


def render_report(
    trials: Sequence[StoredTrial], *, title: str = "async-consumer run", maximize: bool = False
) -> str:
    """
    Render one self-contained HTML page (inline CSS and SVG, no scripts) that shows a run.

    Args:
        trials: the trials with their attempts, as ``await store.list()`` returns them.
        title: the page's heading.
        maximize: higher objectives are better (default: lower is better).
    """
    spans, origin, horizon = _spans(trials)
    points = _points(trials)
    best_one = best_trial(trials, maximize=maximize)
    best = next(((p, t) for p, t in points if best_one is not None and t.id == best_one.id), None)
    latest = [(t.id, v, t.trial.params) for t in trials if (v := objective_of(t)) is not None]
    attempts = len(spans)
    summary = f"{len(trials)} trials · {attempts} attempts"
    if spans:
        summary += (
            f" · {duration_text(horizon - origin)} from {_clock(origin)} to {_clock(horizon)}"
        )
    return page(
        title=escape(title),
        summary=summary,
        header=_header(trials, best),
        legend=_legend(spans),
        timeline=timeline_svg(spans),
        objective=objective_svg([point for point, _ in points], maximize=maximize),
        params=params_svg(latest, best_one.id if best_one else None),
        better="higher" if maximize else "lower",
        failures=_failures(trials),
    )


def _write_atomically(path: str, text: str) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    # os.open applies the umask to 0o666, so the report gets the usual mode of a new file
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


async def write_report(
    store: TrialStore,
    path: str | os.PathLike[str],
    *,
    title: str = "async-consumer run",
    maximize: bool = False,
    keep: Callable[[StoredTrial], bool] | None = None,
) -> int:
    """
    Write the report of every trial in ``store`` to ``path`` (atomically); return how many trials.

    ``keep``: only the trials it accepts (an experiment's version, say). The page is written
    to a temporary file beside ``path`` and renamed over it, so a reader never sees half a
    report.
    """
    trials = await store.list()
    if keep is not None:
        trials = [t for t in trials if keep(t)]
    text = render_report(trials, title=title, maximize=maximize)
    await anyio.to_thread.run_sync(_write_atomically, os.fspath(path), text)
    return len(trials)
