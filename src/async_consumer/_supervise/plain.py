"""
Plain asyncio tasks where ten thousand anyio tasks would cost too much memory.

An anyio task costs about 2.7 KiB more than the asyncio task inside it: its handle, the handle's
own cancel scope and event, its state and their weak references; a task group 1 KiB more. A
worker running ten thousand trials at once has a lane and a lease's heartbeat task for each.
On asyncio those are plain tasks here, with what a task group gives them kept: an error stops
the others, and the caller waits for every one (shielded) before going on. On trio they are
anyio's tasks, which cost little there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from .process import on_asyncio

__all__ = ["PlainTask", "run_copies"]

_NAME = "async_consumer.plain"  # a name shared by all: a task's own would be a string each


class PlainTask:
    """
    A watcher in a plain asyncio task beside its trial's wait.

    It is never cancelled: the watcher ends by its own means (a shielded write in it must
    finish), when ``end`` tells it to; :meth:`join` calls ``end``, waits for the watcher,
    shielded, and raises its error. An error stops the trial's wait (``scope``) at once, as it
    would in a task group.
    """

    __slots__ = ("_end", "_scope", "_task")

    def __init__(
        self,
        watcher: Coroutine[Any, Any, None],
        scope: anyio.CancelScope,
        end: Callable[[], None] | None = None,
    ) -> None:
        self._scope = scope
        self._end = end
        self._task = asyncio.get_running_loop().create_task(watcher, name=_NAME)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._scope.cancel()

    async def join(self) -> None:
        """Tell the watcher to end, and wait until it has; raise its error, if it failed."""
        if self._end is not None:
            self._end()
        task = self._task
        if not task.done():
            with anyio.CancelScope(shield=True):
                await asyncio.wait((task,))
        task.result()


class _Copy:
    """One copy of the work, in a plain task and a cancel scope of its own (which stops it)."""

    __slots__ = ("scope", "task")

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.scope = anyio.CancelScope()
        self.task = asyncio.get_running_loop().create_task(self._run(work), name=_NAME)

    async def _run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with self.scope:
            await work()


async def run_copies(work: Callable[[], Coroutine[Any, Any, None]], copies: int) -> None:
    """
    Run ``copies`` tasks of ``work`` at once until all have returned, as a task group would.

    When one raises, the others are cancelled (through their own cancel scopes, so that their
    shielded parts finish); so are they all when the caller is cancelled. Each copy is waited
    for, and the errors are raised together (a :class:`BaseExceptionGroup`, as anyio raises).
    """
    if not on_asyncio():
        async with anyio.create_task_group() as tg:
            for _ in range(copies):
                tg.start_soon(work)
        return
    running = [_Copy(work) for _ in range(copies)]
    tasks = [copy.task for copy in running]
    stopped: BaseException | None = None
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException as exc:  # noqa: BLE001 - the caller is cancelled: so is every copy
        stopped, pending = exc, {task for task in tasks if not task.done()}
    for copy in running:
        if copy.task in pending:
            copy.scope.cancel()
    if pending:
        with anyio.CancelScope(shield=True):
            await asyncio.wait(pending)
    errors = [
        error for task in tasks if not task.cancelled() and (error := task.exception()) is not None
    ]
    if errors:
        msg = "unhandled errors in the copies"
        raise BaseExceptionGroup(msg, errors) from stopped
    if stopped is not None:
        raise stopped
