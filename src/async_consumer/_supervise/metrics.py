"""
Follow what a running script reports as it goes, and notice when it stops making progress.

A script may append JSON lines to ``$ASYNC_CONSUMER_METRICS_PATH``, e.g.
``{"step": 3, "loss": 0.41}``. Each complete line is handed to the orchestrator as a
:class:`Metric` while the trial runs. A trial whose metrics file and logs have not grown for
``stall_timeout`` seconds is stalled: hung, not slow.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, JsonValue

from .lines import LineFollower

__all__ = ["Metric", "MetricCallback", "follow"]

logger = logging.getLogger("async_consumer")


class Metric(BaseModel):
    """One line a script appended to its metrics file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial_id: str
    attempt: int
    step: int | None
    values: dict[str, JsonValue]
    received_at: datetime


MetricCallback = Callable[[Metric], None]


def _parse(line: bytes, trial_id: str, attempt: int) -> Metric | None:
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        logger.warning(
            "ignored a metrics line that is not a JSON object", extra={"trial_id": trial_id}
        )
        return None
    step = data.pop("step", None)
    if not (step is None or (isinstance(step, int) and not isinstance(step, bool))):
        data["step"], step = step, None
    values = {k: v for k, v in data.items() if not (isinstance(v, float) and not math.isfinite(v))}
    return Metric(
        trial_id=trial_id, attempt=attempt, step=step, values=values, received_at=datetime.now(UTC)
    )


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


async def follow(
    *,
    trial_id: str,
    attempt: int,
    metrics_path: Path,
    logs: Sequence[Path],
    on_metric: MetricCallback | None,
    stall_timeout: float | None,
    on_stall: Callable[[str], None],
    poll: float = 0.2,
) -> None:
    """Poll the metrics file and logs until cancelled; call ``on_stall`` once if progress stops."""
    reader = LineFollower(metrics_path)
    if stall_timeout is not None:
        poll = min(poll, stall_timeout / 4)
    last_progress = anyio.current_time()
    sizes = [_size(p) for p in logs]
    while True:
        await anyio.sleep(poll)
        lines = [line for line in reader.read() if line.strip()]
        new_sizes = [_size(p) for p in logs]
        if lines or new_sizes != sizes:
            last_progress = anyio.current_time()
            sizes = new_sizes
        for line in lines:
            metric = _parse(line, trial_id, attempt)
            if metric is not None and on_metric is not None:
                on_metric(metric)
        idle = anyio.current_time() - last_progress
        if stall_timeout is not None and idle >= stall_timeout:
            on_stall(
                f"no metrics and no output for {idle:.1f} s (stall timeout {stall_timeout:g} s)"
            )
            return
