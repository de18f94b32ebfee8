"""The ``trials`` command's table: one row a trial, sortable, as text, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from .._models import StoredTrial
from .._ranking import objective_of

__all__ = ["SORT_KEYS", "render_trials", "results_text", "sort_trials", "statistics"]

SORT_KEYS = ("added", "id", "status", "objective", "attempts", "duration")
"""What ``--sort`` takes, besides a parameter's name."""
_VERSION = ("version",)
_RESULTS = ("results",)


def statistics(trial: StoredTrial) -> dict[str, Any]:
    """
    The results of the trial's latest finished attempt but its objective (statistics,
    constraints, gradients), by name; none unless it completed.
    """
    outcome = trial.outcome
    if outcome is None or not outcome.is_completed:
        return {}
    return {r.name: r.value for r in outcome.results if r.type != "objective"}


def results_text(values: dict[str, Any], width: int = 80) -> str:
    """``acc=0.91 loss=0.2``, each number in its short form, cut to ``width`` characters."""
    text = " ".join(f"{name}={_short(value)}" for name, value in values.items())
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return json.dumps(value)


def _duration(trial: StoredTrial) -> float | None:
    outcome = trial.outcome
    return outcome.duration if outcome is not None else None


def _row(trial: StoredTrial, versions: Mapping[str, int] | None) -> dict[str, Any]:
    version = {} if versions is None else {"version": versions.get(trial.id)}
    return {
        "trial_id": trial.id,
        **version,
        "status": str(trial.status),
        "objective": objective_of(trial),
        "results": statistics(trial),
        "attempts": len(trial.attempts),
        "duration": _duration(trial),
        "params": trial.trial.params,
    }


def _key(trial: StoredTrial, by: str) -> tuple[int, Any]:
    """A key that puts trials without the value last, and compares like with like."""
    values = {
        "id": trial.id,
        "status": str(trial.status),
        "objective": objective_of(trial),
        "attempts": len(trial.attempts),
        "duration": _duration(trial),
    }
    value: JsonValue | float | None = values[by] if by in values else trial.trial.params.get(by)
    if value is None:
        return (2, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, json.dumps(value) if not isinstance(value, str) else value)


def sort_trials(
    trials: Sequence[StoredTrial], by: str, *, maximize: bool = False
) -> list[StoredTrial]:
    """
    The trials sorted by a column or a parameter (``added``: as the store lists them).

    By objective, the best come first (the highest with ``maximize``); trials without the
    value always come last.
    """
    if by == "added":
        return list(trials)
    if by == "objective" and maximize:
        return sorted(trials, key=lambda t: (objective_of(t) is None, -(objective_of(t) or 0.0)))
    return sorted(trials, key=lambda t: _key(t, by))


def _text(trials: Sequence[StoredTrial], versions: Mapping[str, int] | None) -> str:
    header = ("id", *_VERSION[: versions is not None], "status", "objective", "attempts")
    header += ("duration", *_RESULTS[: any(map(statistics, trials))], "params")
    has_results = "results" in header
    rows = [header] + [
        (
            t.id,
            *([] if versions is None else [str(versions.get(t.id, "-"))]),
            str(t.status),
            _number(objective_of(t), "{:.6g}"),
            str(len(t.attempts)),
            _number(_duration(t), "{:.1f}s"),
            *([results_text(statistics(t), 40) or "-"] if has_results else []),
            " ".join(f"{k}={json.dumps(v)}" for k, v in t.trial.params.items()),
        )
        for t in trials
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        + "\n"
        for row in rows
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _csv(trials: Sequence[StoredTrial], versions: Mapping[str, int] | None) -> str:
    names = list(dict.fromkeys(k for t in trials for k in t.trial.params))
    found = list(dict.fromkeys(k for t in trials for k in statistics(t)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    version = list(_VERSION[: versions is not None])
    # a result's column is named after it, unless a parameter has that name (then result.NAME)
    heads = [f"result.{k}" if k in names or k in _COLUMNS else k for k in found]
    writer.writerow(["id", *version, "status", "objective", "attempts", "duration", *names, *heads])
    for t in trials:
        values = statistics(t)
        results = [_cell(values.get(name)) for name in found]
        params = [_cell(t.trial.params.get(name)) for name in names]
        objective, duration = objective_of(t), _duration(t)
        writer.writerow(
            [
                t.id,
                *([] if versions is None else [versions.get(t.id, "")]),
                str(t.status),
                "" if objective is None else repr(objective),
                len(t.attempts),
                "" if duration is None else f"{duration:.3f}",
                *params,
                *results,
            ]
        )
    return out.getvalue()


_COLUMNS = frozenset({"id", "version", "status", "objective", "attempts", "duration"})


def _cell(value: JsonValue) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def render_trials(
    trials: Sequence[StoredTrial], how: str, *, versions: Mapping[str, int] | None = None
) -> str:
    """
    The trials as an aligned ``text`` table, ``json`` lines or ``csv``; with ``versions``
    (each trial's experiment version, by id), a version column after the id.
    """
    if how == "json":
        return "".join(json.dumps(_row(t, versions)) + "\n" for t in trials)
    if how == "csv":
        return _csv(trials, versions)
    return _text(trials, versions)
