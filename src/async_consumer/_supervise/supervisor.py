"""
Supervision: start a trial's script, watch it while it runs, stop it, and stop them all.

Watchers (heartbeat, metrics and stall, echo) run in a task group, a coalesced heartbeat alone in
a plain task (:mod:`.plain`); the watchdog process is started with the first script, if asked.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Coroutine, KeysView
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from .._models import Lease, Reason, Status
from .._trial.classify import Abort
from .._trial.plan import Plan
from .beats import Kept, coalesced
from .boxed import BoxedChild, Launch
from .contain import Containment
from .echo import echo
from .heartbeat import HeartbeatTarget, beat
from .leases import LocalLeases
from .metrics import MetricCallback, MetricsTail, follow
from .plain import PlainTask
from .process import ChildProcess, Exit, on_asyncio
from .running import Running, Watchers

logger = logging.getLogger("async_consumer")

__all__ = ["Supervision", "Supervisor"]

_INTERRUPTED = Abort(Status.INTERRUPTED, Reason.CANCELLED, "interrupted")

SPAWN_IN_THREADS = 64
"""Scripts running from which new ones start in worker threads, not on the event loop."""

SPAWNERS = 4
"""Worker threads that start scripts at once (beside 2 CPU burners, 1,000 started 25 % sooner
with 4 than with 2; more would pass the 10 threads a process may use)."""


Keeper = Callable[[Lease, Callable[[str], None]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Supervision:
    """How scripts are watched and stopped (see :class:`Consumer` for each field)."""

    timeout: float | None
    grace: float
    store: HeartbeatTarget | None
    heartbeat: float
    heartbeat_failures: int
    stall_timeout: float | None
    on_metric: MetricCallback | None
    echo: bool
    watchdog: bool
    child_watcher: bool
    containment: Containment

    @property
    def follows(self) -> bool:
        """Whether a running script's metrics are followed (for ``on_metric`` or stalls)."""
        return self.on_metric is not None or self.stall_timeout is not None


class Supervisor:
    """Starts, watches and stops scripts; knows which trials are running."""

    def __init__(self, settings: Supervision) -> None:
        self.settings = settings
        self.beats = coalesced(settings.store, settings.heartbeat, settings.heartbeat_failures)
        """Where the running trials' leases are renewed: the store, behind a coalescer."""
        self._running: dict[str, Running] = {}
        # with many scripts running, scripts start in worker threads, off the event loop: a
        # thousand lanes starting together would otherwise hold the loop for seconds (the
        # heartbeats with it), and a spawn waits for its child's exec (vfork, the interpreter
        # lock released meanwhile), which on a busy machine waits for a CPU: more threads wait
        # for more execs at once; with few running, on the loop's thread (a hop costs 0.6 ms)
        self._spawners = anyio.CapacityLimiter(SPAWNERS)
        self._starting = anyio.Semaphore(2 * SPAWNERS)  # see starting()
        self._halted = False
        self._killed = False  # kill() was called: a script spawned since is killed at once
        beats = None if settings.store is None else self.beats  # (no lease without a store)
        self.leases = LocalLeases(
            beats,
            settings.heartbeat,
            settings.heartbeat_failures,
            settings.grace,
            settings.watchdog,
        )

    @property
    def is_halted(self) -> bool:
        """Whether :meth:`interrupt` was called: no new script starts."""
        return self._halted

    @property
    def running(self) -> KeysView[str]:
        """The ids of the trials whose scripts are running now (a live view)."""
        return self._running.keys()

    def check_not_running(self, trial_id: str) -> None:
        """Raise ``ValueError`` if a trial with this id is running."""
        if trial_id in self._running:
            msg = f"trial {trial_id!r} is already running in this consumer"
            raise ValueError(msg)

    def starting(self) -> AbstractAsyncContextManager[object]:
        """
        A place among the scripts about to start: held from creating a trial's files to its spawn.

        With many scripts running, they start in worker threads and the others wait for them.
        Waiting with its logs already open, each trial made every spawn copy its descriptors (and
        the child close them before its exec): ten thousand trials starting together held 17,000
        logs open, and the spawns, not the scripts, set the pace. A few places keep the threads
        busy and the logs open few.
        """
        return self._starting if self._spawners_now() else contextlib.nullcontext()

    def _spawners_now(self) -> anyio.CapacityLimiter | None:
        """The threads a script starts in now (``None``: on the loop's thread, few running)."""
        return self._spawners if len(self._running) >= SPAWN_IN_THREADS else None

    async def start(self, launch: Launch) -> BoxedChild:
        """Start a script in a box of its own (its logs closed once the child has its own)."""
        return await BoxedChild.start_boxed(launch, self.settings, self._spawners_now())

    async def supervise(
        self, child: BoxedChild, plan: Plan, kept: Kept | None = None
    ) -> tuple[Exit | None, Abort | None]:
        """Watch a started script until it ends or is stopped; how it ended, and why stopped."""
        # one frame, not a helper's besides: ten thousand trials wait here at once
        trial, watchdog = plan.trial, self.leases.watch(child.pid, child.traces())
        running = self._running[trial.id] = Running(child, kept=kept)
        if self._halted:  # interrupted while it was being spawned: stopped at once
            running.abort_with(_INTERRUPTED)
            if self._killed:
                child.kill_now()
        timeout = trial.timeout or self.settings.timeout
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        try:
            timed_out = await self._wait(child, plan, running, deadline)
            if timed_out and running.abort is None:  # the deadline
                message = f"timed out after {timeout:g} s"
                running.abort = Abort(Status.BROKEN, Reason.TIMEOUT, message)
        finally:
            exit_ = await child.stop(self.settings.grace)
            self.leases.explain(running, exit_)  # killed by the watchdog?
            del self._running[trial.id]
            if running.done is not None:
                running.done.set()
            if watchdog is not None:
                watchdog.forget(child.pid)
                if not self._running:  # nothing left to register soon: tell it now
                    watchdog.flush()
            if running.metrics is not None and running.metrics.on_metric is not None:
                running.metrics.drain()  # the lines written just before the script ended
        if running.metrics is not None and running.metrics.error is not None:
            raise running.metrics.error  # the orchestrator's own error, as itself
        return exit_, running.abort

    async def _wait(
        self, child: ChildProcess, plan: Plan, running: Running, deadline: float
    ) -> bool:
        """
        Wait for the script to exit, with whatever watches it alongside (in tasks), or until
        stopped or ``deadline``; whether it was cancelled (stopped, or the deadline passed). A
        lease the coalescer alone keeps is kept by a :class:`.plain.PlainTask`, joined after.
        """
        settings, beats = self.settings, self.beats
        lease = plan.lease if settings.store is not None else None
        grouped = lease is not None and (beats is None or not on_asyncio())  # a beat loop; trio
        if grouped or settings.echo or settings.follows or plan.on_metric is not None:
            return await self._wait_watched(plan, running, deadline, lease)
        with anyio.CancelScope() as scope:  # no task group
            running.watch(scope, deadline)
            beat = None
            if lease is not None and beats is not None:
                kept = running.kept or beats.enter(lease)
                beat = PlainTask(beats.hold(kept, running.lost), scope, end=kept.end)
            try:
                await child.wait()
            finally:
                if beat is not None:
                    await beat.join()
        return scope.cancelled_caught

    async def _wait_watched(
        self, plan: Plan, running: Running, deadline: float, lease: Lease | None
    ) -> bool:
        """:meth:`_wait` with watchers in a task group (the wait runs in its cancel scope)."""
        async with anyio.create_task_group() as tg:
            running.watch(tg.cancel_scope, deadline)
            watchers = Watchers(tg)
            if lease is not None:
                watchers.start(self._beat(running.kept), lease, running.lost)
            if self.settings.echo:
                watchers.start(echo, plan.trial.id, plan.paths.stdout, plan.paths.stderr)
            if self.settings.follows or plan.on_metric is not None:
                watchers.start(self._follow, plan, running)
            await running.child.wait()
            watchers.stop()
        return tg.cancel_scope.cancelled_caught

    def _beat(self, kept: Kept | None) -> Keeper:
        """What keeps a lease renewed: the coalescer (one write a tick), or a beat loop."""
        if self.beats is not None:  # the store renews many leases at once
            return partial(self.beats.keep, kept=kept)
        return self._beat_alone

    async def _beat_alone(self, lease: Lease, on_lost: Callable[[str], None]) -> None:
        settings = self.settings
        assert settings.store is not None
        await beat(
            settings.store,
            lease,
            interval=settings.heartbeat,
            max_failures=settings.heartbeat_failures,
            on_lost=on_lost,
        )

    async def _follow(self, plan: Plan, running: Running) -> None:
        paths = plan.paths
        on_metric = plan.on_metric or self.settings.on_metric
        tail = MetricsTail(plan.trial.id, plan.trial.attempt, paths.metrics, on_metric)
        running.metrics = tail
        await follow(
            tail=tail,
            logs=(paths.stdout, paths.stderr),
            stall_timeout=self.settings.stall_timeout,
            on_stall=running.stalled,
            on_error=running.metric_failed,
            on_stop=running.pruned,
        )

    async def stop(self, trial_id: str) -> bool:
        """Stop a running trial; ``True`` once it is gone, ``False`` if it was not running."""
        abort = Abort(Status.INTERRUPTED, Reason.STOPPED, "stopped by the orchestrator")
        return await self._stop_as(trial_id, abort)

    async def supersede(self, lease: Lease) -> None:
        """
        Stop this consumer's run of a trial the store has just leased to it again, if any.

        The store gives a trial out again only once the running attempt's lease is gone, so that
        run's result could never be recorded: it is stopped as lost, and its processes are gone
        before the new attempt starts. One run of a trial at a time; the newest lease counts.
        """
        if lease.trial_id not in self._running:
            return
        message = (
            f"the store leased the trial again (attempt {lease.token}): this run's lease is gone"
        )
        logger.warning("%s; stopping it", message, extra={"trial_id": lease.trial_id})
        await self._stop_as(lease.trial_id, Abort(Status.LOST, Reason.LEASE_LOST, message))

    async def _stop_as(self, trial_id: str, abort: Abort) -> bool:
        running = self._running.get(trial_id)
        if running is None:
            return False
        running.abort_with(abort)
        if running.done is None:
            running.done = anyio.Event()
        await running.done.wait()
        return True

    def interrupt(self) -> None:
        """Stop every running trial gracefully and start no new one."""
        self._halted = True
        for running in list(self._running.values()):
            running.abort_with(_INTERRUPTED)

    def kill(self) -> None:
        """SIGKILL every running trial's process group at once."""
        self.interrupt()
        self._killed = True
        for running in list(self._running.values()):
            running.child.kill_now()

    def close(self) -> None:
        """Stop the watchdog process, if one was started."""
        self.leases.close()
