"""The report's charts as inline SVG: attempts on a timeline by lane, and the objective by trial."""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["COLOURS", "Point", "Span", "duration_text", "objective_svg", "timeline_svg"]

COLOURS = {
    "completed": "#2f9e58",
    "broken": "#d9453d",
    "interrupted": "#e8a317",
    "lost": "#8c939d",
    "running": "#3a7bd5",
}
"""The fill of an attempt's bar by its status (``running`` while it has no outcome)."""

_WIDTH, _LEFT, _RIGHT, _TOP, _ROW, _BAR, _AXIS = 1160, 150, 28, 6, 28, 20, 44
_CHART_HEIGHT, _BOTTOM = 300, 44


@dataclass(frozen=True, slots=True)
class Span:
    """One attempt on the timeline, its times in seconds from the run's first start."""

    trial_id: str
    attempt: int
    status: str
    reason: str
    worker: str
    slot: str
    where: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Point:
    """One completed attempt's objective, in completion order."""

    trial_id: str
    objective: float
    params: str


def duration_text(seconds: float) -> str:
    """A duration for people: ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def nice_ticks(low: float, high: float, count: int = 6, *, whole: bool = False) -> list[float]:
    """About ``count`` round values from ``low`` to ``high`` (steps of 1, 2, 2.5 or 5 times 10^k)."""
    raw = (high - low) / count if high > low else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw * 0.999)
    step = max(step, 1.0) if whole else step
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _number(value: float) -> str:
    return f"{value:.6g}"


def _natural(text: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", text)]


def _svg_open(height: float, label: str) -> str:
    return f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{label}">'


def _pack(spans: Sequence[Span]) -> tuple[list[int], int]:
    """Put each span in the first lane free at its start; return the lanes and how many."""
    lanes = [0] * len(spans)
    busy: list[tuple[float, int]] = []
    free: list[int] = []
    count = 0
    for i in sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end)):
        while busy and busy[0][0] <= spans[i].start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        lanes[i] = heapq.heappop(free) if free else count
        count = max(count, lanes[i] + 1)
        heapq.heappush(busy, (spans[i].end, lanes[i]))
    return lanes, count


def _lane_name(worker: str, slot: str, number: int, count: int, *, many: bool) -> str:
    name = slot or f"lane {number + 1}"
    if slot and count > 1:
        name += f" ({number + 1})"
    if many:
        name = f"{worker if len(worker) <= 12 else worker[:11] + '…'} · {name}"
    return name if len(name) <= 24 else name[:23] + "…"


def assign_lanes(spans: Sequence[Span]) -> tuple[list[str], list[int]]:
    """Lanes per worker (per slot when an attempt had one): their names, and each span's lane."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, span in enumerate(spans):
        groups.setdefault((span.worker, span.slot), []).append(i)
    many = len({worker for worker, _ in groups}) > 1
    names: list[str] = []
    lanes = [0] * len(spans)
    for worker, slot in sorted(groups, key=lambda k: (_natural(k[0]), k[1] != "", _natural(k[1]))):
        members = groups[worker, slot]
        packed, count = _pack([spans[i] for i in members])
        for i, lane in zip(members, packed, strict=True):
            lanes[i] = len(names) + lane
        names += [_lane_name(worker, slot, n, count, many=many) for n in range(count)]
    return names, lanes


def _time_axis(extent: float, scale: float, bottom: float) -> list[str]:
    unit, name = (1, "s") if extent <= 600 else (60, "min") if extent <= 36000 else (3600, "h")
    parts = []
    for tick in nice_ticks(0, extent / unit, 8):
        x = _LEFT + tick * unit * scale
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{bottom:.1f}"/>'
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16:.1f}">{_number(tick)} {name}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{_WIDTH - _RIGHT}" y="{bottom + 36:.1f}" '
        'text-anchor="end">time since the first start</text>'
    )
    return parts


def _bar(span: Span, lane: int, scale: float) -> str:
    x = _LEFT + span.start * scale
    width = max((span.end - span.start) * scale, 1.5)
    y = _TOP + lane * _ROW + (_ROW - _BAR) / 2
    status = f"{span.status} ({span.reason})" if span.reason else span.status
    took = duration_text(span.end - span.start)
    took = f"{took} so far" if span.status == "running" else took
    tip = f"{span.trial_id} · attempt {span.attempt}\n{status}\n{took}\n{span.where}"
    bar = (
        f'<rect class="bar" x="{x:.2f}" y="{y:.1f}" width="{width:.2f}" height="{_BAR}" rx="3" '
        f'fill="{COLOURS[span.status]}" data-status="{span.status}"><title>{escape(tip)}</title>'
        "</rect>"
    )
    if width < 7 * len(span.trial_id) + 10:
        return bar
    return (
        bar
        + f'<text class="in-bar" x="{x + 5:.2f}" y="{y + 14:.1f}">{escape(span.trial_id)}</text>'
    )


def timeline_svg(spans: Sequence[Span]) -> str:
    """Every attempt as a bar in its lane, coloured by status, on an axis of seconds."""
    if not spans:
        return '<p class="empty">No attempt has started yet.</p>'
    names, lanes = assign_lanes(spans)
    extent = max(max(span.end for span in spans), 1.0)
    scale = (_WIDTH - _LEFT - _RIGHT) / extent
    bottom = _TOP + len(names) * _ROW
    parts = [_svg_open(bottom + _AXIS, "timeline of attempts")]
    for n, name in enumerate(names):
        y = _TOP + n * _ROW
        parts.append(
            f'<rect class="lane{n % 2}" x="{_LEFT}" y="{y}" width="{_WIDTH - _LEFT - _RIGHT}" '
            f'height="{_ROW}"/><text class="lane-name" x="{_LEFT - 8}" y="{y + 18}">'
            f"{escape(name)}</text>"
        )
    parts += _time_axis(extent, scale, bottom)
    parts += [_bar(span, lane, scale) for span, lane in zip(spans, lanes, strict=True)]
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _ValueScale:
    """The objective's vertical scale: linear, or logarithmic when positive values span 100x."""

    low: float
    high: float
    is_log: bool

    @classmethod
    def fit(cls, values: Sequence[float]) -> _ValueScale:
        low, high = min(values), max(values)
        if low > 0 and high >= 100 * low:
            return cls(math.log10(low) - 0.1, math.log10(high) + 0.1, is_log=True)
        pad = (high - low) * 0.08 or max(abs(high) * 0.1, 1.0)
        return cls(low - pad, high + pad, is_log=False)

    def y(self, value: float) -> float:
        at = math.log10(value) if self.is_log else value
        bottom = _CHART_HEIGHT - _BOTTOM
        return _TOP + (self.high - at) / (self.high - self.low) * (bottom - _TOP)

    def ticks(self) -> list[float]:
        if self.is_log:
            return [10.0**k for k in nice_ticks(self.low, self.high, 6, whole=True)]
        return nice_ticks(self.low, self.high, 6)


def _axes(scale: _ValueScale, count: int, x_of: Callable[[float], float]) -> list[str]:
    bottom = _CHART_HEIGHT - _BOTTOM
    title = f"objective{' (log scale)' if scale.is_log else ''}"
    y_title = (
        f'<text class="axis-title" transform="rotate(-90)" x="{-(_TOP + bottom) / 2:.1f}" '
        f'y="{_LEFT - 90}" text-anchor="middle">{title}</text>'
    )
    x_title = (
        f'<text class="axis-title" x="{_WIDTH - _RIGHT}" y="{bottom + 36}" text-anchor="end">'
        "trials in completion order</text>"
    )
    parts = [y_title, x_title]
    for tick in scale.ticks():
        y = scale.y(tick)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick value" x="{_LEFT - 8}" y="{y + 4:.1f}">{_number(tick)}</text>'
        )
    parts += [
        f'<text class="tick" x="{x_of(tick - 1):.1f}" y="{bottom + 16}">{tick:g}</text>'
        for tick in nice_ticks(1, count, 10, whole=True)
    ]
    return parts


def _best_mark(x: float, y: float, point: Point) -> str:
    anchor, dx = ("end", -10) if x > _WIDTH * 0.8 else ("start", 10)
    label = escape(f"best {point.objective:.6g} · {point.trial_id[:24]}")
    return (
        f'<circle class="best-ring" cx="{x:.1f}" cy="{y:.1f}" r="8"/><text class="best-label" '
        f'x="{x + dx:.1f}" y="{y - 10:.1f}" text-anchor="{anchor}">{label}</text>'
    )


def objective_svg(points: Sequence[Point], *, maximize: bool = False) -> str:
    """The objective of each completed attempt in completion order, with the best so far."""
    if not points:
        return '<p class="empty">No trial has completed yet.</p>'
    scale = _ValueScale.fit([point.objective for point in points])
    step = (_WIDTH - _LEFT - _RIGHT) / len(points)

    def x_of(index: float) -> float:
        return _LEFT + (index + 0.5) * step

    parts = [_svg_open(_CHART_HEIGHT, "objective by trial"), *_axes(scale, len(points), x_of)]
    best, best_at = -math.inf if maximize else math.inf, 0
    path: list[str] = []
    dots: list[str] = []
    radius = 4 if len(points) <= 300 else 2.5
    for index, point in enumerate(points):
        x, y = x_of(index), scale.y(point.objective)
        record = point.objective > best if maximize else point.objective < best
        if record:
            best, best_at = point.objective, index
            path.append(f"H{x:.1f}V{y:.1f}" if path else f"M{x:.1f},{y:.1f}")
        tip = escape(f"{point.trial_id}\nobjective {point.objective:.6g}\n{point.params}")
        dots.append(
            f'<circle class="point{" record" if record else ""}" cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{radius}"><title>{tip}</title></circle>'
        )
    path.append(f"H{x_of(len(points) - 1):.1f}")
    mark = _best_mark(x_of(best_at), scale.y(best), points[best_at])
    return "".join([*parts, f'<path class="best" d="{"".join(path)}"/>', *dots, mark, "</svg>"])
