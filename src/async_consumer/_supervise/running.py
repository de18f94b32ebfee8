"""A running trial, stoppable from outside, and the tasks that watch it while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple, Unpack

import anyio
import anyio.abc

from .._models import Reason, Status
from .._trial.classify import Abort
from .beats import Kept
from .metrics import MetricsTail
from .process import ChildProcess

__all__ = ["Running", "Watchers"]

_Args = TypeVarTuple("_Args")


@dataclass(slots=True)
class Running:
    """A trial whose script is running, so that it can be stopped from outside."""

    child: ChildProcess
    started: float = field(default_factory=time.monotonic)
    """When it started (``time.monotonic``)."""
    kept: Kept | None = None
    """Its lease, as the coalescer has kept it since the attempt began (``None``: from now)."""
    scope: anyio.CancelScope | None = None
    """What its wait runs in (its watchers' task group's, if any): cancelled to stop it."""
    abort: Abort | None = None
    done: anyio.Event | None = None
    """Set when the trial has ended; made only when someone waits for it (few do)."""
    metrics: MetricsTail | None = None
    """Its metrics file, when someone follows it: read once more after the script ends."""

    def watch(self, scope: anyio.CancelScope, deadline: float) -> None:
        """Wait for the script in ``scope``, cancelled at ``deadline`` or when stopped."""
        self.scope = scope
        scope.deadline = deadline
        if self.abort is not None:  # stopped before its wait began
            scope.cancel()

    def abort_with(self, abort: Abort) -> None:
        """Stop the script (the first reason given is the one kept)."""
        if self.abort is None:
            self.abort = abort
        if self.scope is not None:
            self.scope.cancel()

    def lost(self, message: str) -> None:
        """Stop the script: its lease is gone (a heartbeat's callback)."""
        self.abort_with(Abort(Status.LOST, Reason.LEASE_LOST, message))

    def metric_failed(self, message: str) -> None:
        """Stop the script: ``on_metric`` raised (the error reaches the caller after the stop)."""
        self.abort_with(Abort(Status.INTERRUPTED, Reason.CANCELLED, message))

    def pruned(self, message: str) -> None:
        """Stop the script: the metrics callback answered that it should stop (a pruner)."""
        self.abort_with(Abort(Status.INTERRUPTED, Reason.PRUNED, message))

    def stalled(self, message: str) -> None:
        """Stop the script: it made no progress for too long (the metrics follower's callback)."""
        self.abort_with(Abort(Status.BROKEN, Reason.STALLED, message))


class Watchers:
    """
    The tasks watching one running trial, each stopped through its own task's cancel scope.

    Stopping them through their own scopes, not by cancelling their task group, leaves no
    reference cycles behind on asyncio (a cancelled task's error and traceback make one).
    """

    __slots__ = ("_handles", "_tg")

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._handles: list[anyio.TaskHandle[None]] = []

    def start(
        self, watcher: Callable[[Unpack[_Args]], Coroutine[Any, Any, None]], *args: *_Args
    ) -> None:
        """Start ``watcher(*args)`` in a task of the group."""
        self._handles.append(self._tg.start_soon(watcher, *args))

    def stop(self) -> None:
        """Stop every watcher (they end at their next await)."""
        for handle in self._handles:
            handle.cancel()
