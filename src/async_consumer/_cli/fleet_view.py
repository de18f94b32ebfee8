"""The fleet as ``status`` shows it: each live worker's host, job, task, trials running, last beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from .._fleet import WorkerInfo, WorkerState

__all__ = ["worker_lines", "worker_rows"]

_COLUMNS = ("worker", "host", "job", "task", "running", "state", "last beat")


def _age(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else f"{max((now - moment).total_seconds(), 0.0):.0f}s ago"


def worker_lines(workers: Sequence[WorkerInfo], now: datetime | None = None) -> list[str]:
    """
    A table of the workers that have not exited, under a line counting them all by state.

    Exited workers are counted, not listed: a fleet that ran for a week has many.
    """
    if not workers:
        return []
    now = now or datetime.now(UTC)
    states = Counter(w.state for w in workers)
    counts = ", ".join(f"{states[state]} {state}" for state in WorkerState if states[state])
    rows = [
        (
            w.name,
            w.host,
            w.job_id or "-",
            w.task_id or "-",
            str(w.running),
            str(w.state),
            _age(w.beat_at, now),
        )
        for w in workers
        if w.state is not WorkerState.EXITED
    ]
    lines = [f"workers: {counts}"]
    if rows:
        widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows, strict=True)]
        lines += [
            "  " + "  ".join(c.ljust(n) for c, n in zip(row, widths, strict=True))
            for row in (_COLUMNS, *rows)
        ]
    return [line.rstrip() for line in lines]


def worker_rows(workers: Sequence[WorkerInfo]) -> list[dict[str, object]]:
    """Every worker as a JSON-ready mapping (exited ones too)."""
    return [worker.model_dump(mode="json") for worker in workers]
