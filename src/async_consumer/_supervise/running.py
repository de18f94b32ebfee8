"""A running trial, stoppable from outside, and the tasks that watch it while it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVarTuple, Unpack

import anyio
import anyio.abc

from .._models import Reason, Status
from .._trial.classify import Abort
from .metrics import MetricsTail
from .process import ChildProcess

__all__ = ["Running", "Watchers"]

_Args = TypeVarTuple("_Args")


@dataclass(slots=True)
class Running:
    """A trial whose script is running, so that it can be stopped from outside."""

    child: ChildProcess
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    abort: Abort | None = None
    done: anyio.Event | None = None
    """Set when the trial has ended; made only when someone waits for it (few do)."""
    metrics: MetricsTail | None = None
    """Its metrics file, when someone follows it: read once more after the script ends."""

    def abort_with(self, abort: Abort) -> None:
        """Stop the script (the first reason given is the one kept)."""
        if self.abort is None:
            self.abort = abort
        self.scope.cancel()

    def lost(self, message: str) -> None:
        """Stop the script: its lease is gone (a heartbeat's callback)."""
        self.abort_with(Abort(Status.LOST, Reason.LEASE_LOST, message))

    def metric_failed(self, message: str) -> None:
        """Stop the script: ``on_metric`` raised (the error reaches the caller after the stop)."""
        self.abort_with(Abort(Status.INTERRUPTED, Reason.CANCELLED, message))

    def stalled(self, message: str) -> None:
        """Stop the script: it made no progress for too long (the metrics follower's callback)."""
        self.abort_with(Abort(Status.BROKEN, Reason.STALLED, message))


class Watchers:
    """
    The tasks watching one running trial, each in a cancel scope of its own.

    Stopping them through their own scopes, not by cancelling their task group, leaves no
    reference cycles behind on asyncio (a cancelled task's error and traceback make one).
    """

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._scopes: list[anyio.CancelScope] = []

    def start(self, watcher: Callable[[Unpack[_Args]], Awaitable[None]], *args: *_Args) -> None:
        """Start ``watcher(*args)`` in a task of the group."""
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        self._tg.start_soon(_run_within, scope, watcher, *args)

    def stop(self) -> None:
        """Stop every watcher (they end at their next await)."""
        for scope in self._scopes:
            scope.cancel()


async def _run_within(
    scope: anyio.CancelScope,
    watcher: Callable[[Unpack[_Args]], Awaitable[None]],
    *args: *_Args,
) -> None:
    with scope:
        await watcher(*args)
