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

__all__ = ["SORT_KEYS", "render_trials", "sort_trials"]

SORT_KEYS = ("added", "id", "status", "objective", "attempts", "duration")
"""What ``--sort`` takes, besides a parameter's name."""
_VERSION = ("version",)


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
    header += ("duration", "params")
    rows = [header] + [
        (
            t.id,
            *([] if versions is None else [str(versions.get(t.id, "-"))]),
            str(t.status),
            _number(objective_of(t), "{:.6g}"),
            str(len(t.attempts)),
            _number(_duration(t), "{:.1f}s"),
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
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    version = list(_VERSION[: versions is not None])
    writer.writerow(["id", *version, "status", "objective", "attempts", "duration", *names])
    for t in trials:
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
            ]
        )
    return out.getvalue()


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
