"""
Follow what a running script reports as it goes, and notice when it stops making progress.

A script may append JSON lines to ``$ASYNC_CONSUMER_METRICS_PATH``, e.g.
``{"step": 3, "loss": 0.41}``. Each complete line is handed to the orchestrator as a
:class:`Metric` while the trial runs. A trial whose metrics file and logs have not grown for
``stall_timeout`` seconds is stalled: hung, not slow.
"""

from __future__ import annotations

import inspect
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

__all__ = ["Metric", "MetricCallback", "MetricsTail", "check_callback", "follow"]

logger = logging.getLogger("async_consumer")


class Metric(BaseModel):
    """One line a script appended to its metrics file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial_id: str
    attempt: int
    step: int | None
    values: dict[str, JsonValue]
    received_at: datetime


MetricCallback = Callable[[Metric], object]
"""Called with each metric line; answering ``True`` stops the trial (pruned), any other answer
(``None``) lets it run on."""


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


def check_callback(on_metric: MetricCallback | None) -> None:
    """
    Refuse an ``async def`` callback: it would be called, never awaited.

    Raises:
        TypeError: ``on_metric`` is a coroutine function, or an object with an async ``__call__``.
    """
    call = getattr(on_metric, "__call__", None)  # noqa: B004 - an object's async __call__ too
    if inspect.iscoroutinefunction(on_metric) or inspect.iscoroutinefunction(call):
        msg = "on_metric must be a plain function (it is called, never awaited), not async"
        raise TypeError(msg)


class MetricsTail:
    """
    One attempt's metrics file, read as it grows and once more after the script has ended.

    Each line is handed to ``on_metric`` once, in order. The last read (:meth:`drain`) comes
    after the script's process group is gone, so lines written just before exit arrive too.
    An exception raised by ``on_metric`` is kept in :attr:`error` (the caller re-raises it) and
    no further line is handed out; nor after it answered ``True`` (kept in :attr:`stop`).
    """

    def __init__(
        self, trial_id: str, attempt: int, path: Path, on_metric: MetricCallback | None
    ) -> None:
        self.trial_id = trial_id
        self.attempt = attempt
        self.on_metric = on_metric
        self.error: Exception | None = None
        self.stop: Metric | None = None
        """The line whose callback answered ``True`` (stop the trial), if one did."""
        self._reader = LineFollower(path)

    def read(self, final: bool = False) -> bool:
        """Hand out the new complete lines (all that is left if ``final``); whether any came."""
        seen = False
        while True:
            lines = [line for line in self._reader.read(final) if line.strip()]
            seen = seen or bool(lines)
            for line in lines:
                self._deliver(line)
            if not (final and lines):
                return seen

    def drain(self) -> None:
        """The last read, once the script has ended: every line left, the unfinished one too."""
        self.read(final=True)

    def _deliver(self, line: bytes) -> None:
        metric = _parse(line, self.trial_id, self.attempt)
        if metric is None or self.on_metric is None or self.error is not None:
            return
        if self.stop is not None:  # the trial is being stopped: nothing more is asked
            return
        try:
            answer = self.on_metric(metric)
        except Exception as exc:  # noqa: BLE001 - the caller's error, kept to be re-raised
            self.error = exc
            return
        if answer is True and self.stop is None:
            self.stop = metric


async def follow(
    *,
    tail: MetricsTail,
    logs: Sequence[Path],
    stall_timeout: float | None,
    on_stall: Callable[[str], None],
    on_error: Callable[[str], None],
    on_stop: Callable[[str], None] | None = None,
    poll: float = 0.2,
) -> None:
    """
    Poll the metrics file and logs until cancelled; call ``on_stall`` once if progress stops.

    ``on_error`` is called (and following ends) when ``on_metric`` raised; ``on_stop`` when it
    answered ``True`` for a line (stop the trial: pruned).
    """
    if stall_timeout is not None:
        poll = min(poll, stall_timeout / 4)
    last_progress = anyio.current_time()
    sizes = [_size(p) for p in logs]
    while True:
        await anyio.sleep(poll)
        seen = tail.read()
        if tail.error is not None:
            on_error(f"on_metric raised {type(tail.error).__name__}: {tail.error}")
            return
        if tail.stop is not None and on_stop is not None:
            shown = ", ".join(f"{k}={_number(v)}" for k, v in tail.stop.values.items())
            on_stop(f"pruned at step {tail.stop.step}: {shown}")
            return
        new_sizes = [_size(p) for p in logs]
        if seen or new_sizes != sizes:
            last_progress = anyio.current_time()
            sizes = new_sizes
        idle = anyio.current_time() - last_progress
        if stall_timeout is not None and idle >= stall_timeout:
            on_stall(
                f"no metrics and no output for {idle:.1f} s (stall timeout {stall_timeout:g} s)"
            )
            return


def _number(value: object) -> str:
    """A metric's value as a line shows it: a float in 6 significant digits, as ``%g`` does."""
    return f"{value:g}" if isinstance(value, float) else str(value)
