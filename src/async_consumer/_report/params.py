"""The report's view of each parameter against the objective: one small scatter plot each."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape

from pydantic import JsonValue

__all__ = ["ParamPoint", "params_svg"]

_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 360, 230, 58, 14, 12, 40
_MAX_PARAMS = 24
_MAX_CATEGORIES = 30

ParamPoint = tuple[str, float, dict[str, JsonValue]]
"""A completed trial: its id, its objective and its parameters."""


def _is_number(value: JsonValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positions(values: Sequence[JsonValue]) -> tuple[list[float], list[tuple[float, str]]] | None:
    """Each value's place from 0 to 1, and the axis labels; ``None`` if it cannot be drawn."""
    if all(_is_number(v) for v in values):
        numbers = [float(v) for v in values]  # type: ignore[arg-type]
        low, high = min(numbers), max(numbers)
        log = low > 0 and high >= 100 * low
        at = [math.log10(n) for n in numbers] if log else numbers
        lo, hi = min(at), max(at)
        span = (hi - lo) or 1.0
        places = [0.5 if hi == lo else (a - lo) / span for a in at]
        ends = [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")] if hi > lo else [(0.5, f"{low:.4g}")]
        return places, ends
    names = sorted({json.dumps(v) if not isinstance(v, str) else v for v in values})
    if len(names) > _MAX_CATEGORIES:
        return None
    index = {name: i for i, name in enumerate(names)}
    step = 1.0 / len(names)
    places = [(index[json.dumps(v) if not isinstance(v, str) else v] + 0.5) * step for v in values]
    return places, [((i + 0.5) * step, name[:12]) for i, name in enumerate(names)]


def _vertical(objectives: Sequence[float]) -> tuple[float, float]:
    low, high = min(objectives), max(objectives)
    pad = (high - low) * 0.08 or max(abs(high) * 0.1, 1.0)
    return low - pad, high + pad


def _frame(
    name: str, ticks: Sequence[tuple[float, str]], labels: Sequence[tuple[float, str]]
) -> list[str]:
    """The plot's opening tag, axis title and tick labels (``ticks``: y, ``labels``: x)."""
    width = _W - _LEFT - _RIGHT
    opening = (
        f'<svg class="chart param" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="objective against {escape(name)}">'
    )
    title = (
        f'<text class="axis-title" x="{_LEFT + width / 2:.1f}" y="{_H - 6}" '
        f'text-anchor="middle">{escape(name)}</text>'
    )
    parts = [opening, title]
    parts += [
        f'<text class="tick value" x="{_LEFT - 6}" y="{y + 4:.1f}">{text}</text>'
        for y, text in ticks
    ]
    parts += [
        f'<text class="tick" x="{_LEFT + at * width:.1f}" y="{_H - _BOTTOM + 16}" '
        f'text-anchor="middle">{escape(label)}</text>'
        for at, label in labels
    ]
    return parts


def _plot(name: str, points: Sequence[ParamPoint], best: str) -> str:
    drawn = [(tid, obj, params[name]) for tid, obj, params in points if name in params]
    placed = _positions([value for *_, value in drawn]) if drawn else None
    if placed is None:
        return ""
    xs, labels = placed
    low, high = _vertical([obj for _, obj, _ in drawn])
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def y_of(value: float) -> float:
        return _TOP + (high - value) / (high - low) * height

    objectives = [obj for _, obj, _ in drawn]
    ends = (min(objectives), max(objectives))
    parts = _frame(name, [(y_of(v), f"{v:.4g}") for v in set(ends)], labels)
    for (tid, obj, value), at in zip(drawn, xs, strict=True):
        tip = escape(f"{tid}\n{name} = {json.dumps(value)[:60]}\nobjective {obj:.6g}")
        record = " record" if tid == best else ""
        parts.append(
            f'<circle class="point{record}" cx="{_LEFT + at * width:.1f}" '
            f'cy="{y_of(obj):.1f}" r="4"><title>{tip}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def params_svg(points: Sequence[ParamPoint], best: str | None) -> str:
    """
    One scatter plot per parameter: its value across, the objective up; the best trial marked.

    Numbers are placed on a linear axis (logarithmic when positive values span 100x), other
    values as categories (a parameter with more than 30 distinct ones is left out).
    """
    if not points:
        return '<p class="empty">No trial has completed yet.</p>'
    names = list(dict.fromkeys(name for _, _, params in points for name in params))
    plots = [_plot(name, points, best or "") for name in names[:_MAX_PARAMS]]
    drawn = "".join(f'<div class="param-plot">{plot}</div>' for plot in plots if plot)
    return f'<div class="param-grid">{drawn}</div>' if drawn else '<p class="empty">-</p>'
