"""``Consumer``: run one trial's script, supervised, and classify how it ended."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Self

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._attempt import (
    Plan,
    Running,
    abort_as,
    build_outcome,
    contract_environment,
    prepare_sync,
    read_results_of,
)  # fmt: skip
from ._batch import Batch, open_batch, run_map
from ._errors import TemplateError, TrialFilesError
from ._models import Lease, Outcome, Reason, Status, Trial
from ._retry import RetryPolicy
from ._slots import SlotPool
from ._supervise.echo import echo
from ._supervise.heartbeat import HeartbeatTarget, beat
from ._supervise.metrics import MetricCallback, follow
from ._supervise.process import ChildProcess, Exit
from ._supervise.watchdog import Watchdog
from ._trial.classify import Abort, classify
from ._trial.codeversion import CodeChangePolicy, CodeVersionWatch
from ._trial.command import CommandTemplate, ConfigTemplate
from ._trial.environment import EnvPolicy
from ._trial.files import params_json, trial_paths
from ._trial.results import DEFAULT_MAX_RESULTS_BYTES

__all__ = ["Consumer"]

logger = logging.getLogger("async_consumer")

_INLINE_PREPARE_SECONDS = 0.001
"""Trials' files are created inline while creating them takes less than this on average."""

_PROBE_LIMIT = 0.05
"""Above this average, no trial's files are created inline, not even to measure."""

_Logs = tuple[BinaryIO, BinaryIO]


class Consumer:
    """
    Runs a user's script once per trial, as a black box, and reports each attempt's outcome.

    Args:
        command: the command line, with placeholders such as ``{lr}`` or ``{trial.id}``.
        base_dir: where trial working directories are created (``<base>/<experiment>/<trial>``).
        run_in_working_dir: run the script in its trial's directory instead of the current one.
        config_template: a JSON or YAML file rendered per trial to ``{config_file}``.
        env: variables added to every script's environment.
        env_allow: if given, only the consumer's variables matching these patterns pass on.
        env_deny: the consumer's variables matching these patterns never pass on.
        timeout: seconds a script may run (a trial's own ``timeout`` wins).
        grace: seconds between SIGTERM and SIGKILL when a script is stopped.
        interrupt_code: the exit code meaning "interrupted, run me again" (Orion's 130).
        max_results_bytes: the largest results file accepted.
        code_change: ``warn``, ``error`` or ``ignore`` when the script's git state changes.
        max_concurrency: the most scripts running at once, over all calls.
        store: where leases are kept alive (``heartbeat(lease)``) for trials run under a lease.
        heartbeat: seconds between two heartbeats.
        heartbeat_failures: heartbeats failing in a row before a trial counts as lost.
        stall_timeout: seconds without new metrics or output before a trial counts as stalled.
        on_metric: called with each :class:`Metric` line a script reports while it runs.
        slots: named resources, e.g. ``{"gpu": ["0", "1"]}``, handed out per a trial's demand.
        retry: which failed attempts run again (an int is a number of retries).
        experiment_id: given to scripts as ``ASYNC_CONSUMER_EXPERIMENT_ID`` (default: the name).
        experiment_version: given to scripts as ``ASYNC_CONSUMER_EXPERIMENT_VERSION``.
        watchdog: start a watchdog process that kills the trials' process groups if this
            process dies without stopping them (SIGKILL, OOM killer); call :meth:`close` (or
            use ``async with``) when done.
        echo: copy each script's output to this process's stdout and stderr as it comes,
            every line prefixed with ``[trial id]`` (the log files keep it all too).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        base_dir: str | os.PathLike[str] = ".async-consumer/trials",
        run_in_working_dir: bool = False,
        config_template: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        env_allow: Iterable[str] | None = None,
        env_deny: Iterable[str] = (),
        timeout: float | None = None,
        grace: float = 5.0,
        interrupt_code: int = 130,
        max_results_bytes: int = DEFAULT_MAX_RESULTS_BYTES,
        code_change: CodeChangePolicy | str = CodeChangePolicy.WARN,
        max_concurrency: int | None = None,
        store: HeartbeatTarget | None = None,
        heartbeat: float = 30.0,
        heartbeat_failures: int = 3,
        stall_timeout: float | None = None,
        on_metric: MetricCallback | None = None,
        slots: Mapping[str, Sequence[str]] | None = None,
        retry: RetryPolicy | int = 0,
        experiment_id: str | None = None,
        experiment_version: int = 1,
        watchdog: bool = False,
        echo: bool = False,
    ) -> None:
        _positive(timeout=timeout, heartbeat=heartbeat, stall_timeout=stall_timeout)
        _positive(max_concurrency=max_concurrency, max_results_bytes=max_results_bytes)
        if grace < 0:
            msg = f"grace must not be negative, not {grace}"
            raise ValueError(msg)
        if not 1 <= interrupt_code <= 255:
            msg = f"interrupt_code must be an exit code from 1 to 255, not {interrupt_code}"
            raise ValueError(msg)
        if heartbeat_failures < 1:
            msg = f"heartbeat_failures must be 1 or more, not {heartbeat_failures}"
            raise ValueError(msg)
        self.command = CommandTemplate(command)
        self.config = None if config_template is None else ConfigTemplate.load(config_template)
        self.base_dir = Path(base_dir).absolute()
        self.run_in_working_dir = run_in_working_dir
        allow = None if env_allow is None else tuple(env_allow)
        self.env = EnvPolicy(allow=allow, deny=tuple(env_deny), extra=dict(env or {}))
        self.timeout = timeout
        self.grace = grace
        self.interrupt_code = interrupt_code
        self.max_results_bytes = max_results_bytes
        self.store = store
        self.heartbeat = heartbeat
        self.heartbeat_failures = heartbeat_failures
        self.stall_timeout = stall_timeout
        self.on_metric = on_metric
        self.slots = SlotPool(slots or {})
        self.retry = RetryPolicy.of(retry) if isinstance(retry, int) else retry
        self.experiment_id = experiment_id
        self.experiment_version = experiment_version
        self.max_concurrency = max_concurrency or os.cpu_count() or 1
        self.host = socket.gethostname()
        self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        self._code = CodeVersionWatch(CodeChangePolicy(code_change))
        self._running: dict[str, Running] = {}
        self._made_dirs: set[Path] = set()
        self._prepare_seconds = 0.0  # a moving average of the time it takes, measured inline
        self._prepared = 0
        self._queued = 0  # trials waiting for a place
        self._finishing: set[Path] = set()  # working dirs of ended trials not yet read
        self._io_limiter = anyio.CapacityLimiter(4)
        self._use_watchdog = watchdog
        self.echo = echo
        self._watchdog: Watchdog | None = None
        self.is_halted = False

    # -- the public face -------------------------------------------------------------------

    async def run(self, trial: Trial | Lease) -> Outcome:
        """
        Run a trial's script until it ends, and return the outcome of its last attempt.

        A :class:`Lease` runs once, its heartbeat kept by ``store``; a :class:`Trial` is retried
        as ``retry`` says. A failing script is an outcome, never an exception. Cancelling the
        caller stops the script's whole process group, then re-raises the cancellation.

        Raises:
            TemplateError: the command or config names an unknown placeholder (nothing started).
            SlotError: the trial asks for more slots than the consumer has (nothing started).
            ValueError: a trial with the same id is already running in this consumer.
        """
        outcome = await self._run_plan(self._plan_of(trial), None)
        assert outcome is not None  # no gate: it always starts
        return outcome

    async def run_when(self, trial: Trial | Lease, may_start: Callable[[], bool]) -> Outcome | None:
        """
        Like :meth:`run`, but ask ``may_start()`` once a place is free; ``None`` if it says no.

        Batches use this to start nothing more once ``max_broken`` is reached, even for trials
        that were already queued.
        """
        # an unknown placeholder or an impossible slot demand raises here, before any wait
        return await self._run_plan(self._plan_of(trial), may_start)

    def run_batch(
        self, trials: Iterable[Trial | Lease] = (), *, max_broken: int | None = None
    ) -> AbstractAsyncContextManager[Batch]:
        """
        Run trials concurrently (at most ``max_concurrency`` at once); outcomes as they finish.

        Use as ``async with consumer.run_batch(trials) as outcomes: async for o in outcomes``;
        ``outcomes.add(trial)`` queues more while it runs. After ``max_broken`` broken outcomes
        no further trial starts (they are listed in ``outcomes.skipped``). Leaving the block
        early stops every running trial's process group first.

        Raises:
            TemplateError: a trial cannot be rendered (checked for all before any starts).
            SlotError: a trial asks for more slots than exist.
        """
        return open_batch(self, trials, max_broken)

    async def map(
        self, trials: Iterable[Trial | Lease], *, max_broken: int | None = None
    ) -> list[Outcome | None]:
        """Run trials concurrently; their outcomes in input order (``None``: never started)."""
        return await run_map(self, list(trials), max_broken)

    def check(self, trial: Trial) -> None:
        """
        Raise if the trial could not be run as asked, before anything starts.

        Raises:
            TemplateError: an unknown placeholder in the command or the config template.
            SlotError: more slots asked for than exist.
        """
        self._plan_of(trial)

    async def stop(self, trial_id: str) -> bool:
        """
        Stop a running trial (SIGTERM, grace, SIGKILL); its outcome is interrupted, ``stopped``.

        Returns when its processes are gone: ``True`` if it was running, ``False`` if not.
        """
        running = self._running.get(trial_id)
        if running is None:
            return False
        running.abort_with(Abort(Status.INTERRUPTED, Reason.STOPPED, "stopped by the orchestrator"))
        if running.done is None:
            running.done = anyio.Event()
        await running.done.wait()
        return True

    def interrupt(self) -> None:
        """Stop every running trial gracefully and start no new one (their outcome: interrupted)."""
        self.is_halted = True
        for running in list(self._running.values()):
            running.abort_with(Abort(Status.INTERRUPTED, Reason.CANCELLED, "interrupted"))

    def kill(self) -> None:
        """SIGKILL every running trial's process group at once."""
        self.interrupt()
        for running in list(self._running.values()):
            running.child.kill_now()

    def close(self) -> None:
        """Stop the watchdog process, if one was started (trials must have ended)."""
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> list[str]:
        """The ids of the trials whose scripts are running now."""
        return list(self._running)

    # -- one attempt -----------------------------------------------------------------------

    def _plan_of(self, item: Trial | Lease) -> Plan:
        """Check a trial (or a lease's) and decide its first attempt; raises if it cannot run."""
        lease = item if isinstance(item, Lease) else None
        trial = item.trial if isinstance(item, Lease) else item
        self.slots.check(trial.slots)
        return self._plan(trial, lease)

    def _plan(self, trial: Trial, lease: Lease | None) -> Plan:
        paths = trial_paths(self.base_dir, trial, self.config.suffix if self.config else None)
        kwargs = {"trial_id": trial.id, "attempt": trial.attempt, "experiment": trial.experiment}
        argv = self.command.render(trial.params, paths=paths, **kwargs)  # type: ignore[arg-type]
        config = self.config and self.config.render(trial.params, paths=paths, **kwargs)  # type: ignore[arg-type]
        return Plan(trial, lease, paths, argv, params_json(trial), _utf8(trial, config or None))

    async def _run_plan(self, plan: Plan, may_start: Callable[[], bool] | None) -> Outcome | None:
        """
        Run a planned trial, retried as ``retry`` says (see :meth:`run_when`).

        Without a gate (``may_start``), the next trial may start before this one's outcome is
        built; with one, the outcome comes first, for the gate may depend on it (``max_broken``).
        """
        while True:
            self._queued += 1
            try:
                await self._limiter.acquire()
            finally:
                self._queued -= 1
            try:
                if may_start is not None and not may_start():
                    return None
                finish = await self._attempt(plan)
            finally:
                self._limiter.release()
            if self._queued and may_start is None:
                # the script is gone and its place free: let the next trial start its script
                # first, then read these results and build this outcome while it runs (a trial
                # with the same files waits for that in _attempt)
                self._finishing.add(plan.paths.working_dir)
                try:
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                    outcome = finish()
                finally:
                    self._finishing.discard(plan.paths.working_dir)
            else:
                outcome = finish()
            if plan.lease is not None or self.is_halted or not self.retry.should_retry(outcome):
                return outcome
            delay = self.retry.delay(outcome.attempt)
            extra = {"trial_id": plan.trial.id}
            logger.warning("attempt %d %s; retrying in %.1f s", outcome.attempt, outcome.message,
                           delay, extra=extra)  # fmt: skip
            await anyio.sleep(delay)
            plan = self._plan(
                plan.trial.model_copy(update={"attempt": plan.trial.attempt + 1}), None
            )

    async def _attempt(self, plan: Plan) -> Callable[[], Outcome]:
        """Run one attempt; return what builds its outcome (once its place is given back)."""
        trial, paths = plan.trial, plan.paths
        cwd = paths.working_dir if self.run_in_working_dir else None
        started_at = datetime.now(UTC)
        outcome = partial(self._outcome, plan, started_at)
        if self.is_halted:
            return partial(
                outcome, Abort(Status.INTERRUPTED, Reason.CANCELLED, "not started: interrupted")
            )
        if trial.id in self._running:
            if plan.lease is None:
                msg = f"trial {trial.id!r} is already running in this consumer"
                raise ValueError(msg)
            await self._supersede(plan.lease)
        version, changed = await self._code.check(plan.argv, cwd)
        outcome = partial(outcome, code_version=version)
        if changed and self._code.policy is CodeChangePolicy.ERROR:
            message = f"code changed since the consumer started ({self._code.initial} -> {version})"
            return partial(outcome, Abort(Status.BROKEN, Reason.CODE_CHANGED, message))
        if changed:
            logger.warning("the code changed since the first trial: %s -> %s", self._code.initial,
                           version, extra={"trial_id": trial.id})  # fmt: skip
        async with self.slots.acquire(trial.slots) as granted:
            outcome = partial(outcome, slots=granted)
            added = contract_environment(plan, granted, self.interrupt_code,
                                         self.experiment_id, self.experiment_version)  # fmt: skip
            outcome = partial(outcome, env=added)
            stdout, stderr = await self._prepare(plan)
            try:
                with stdout, stderr:
                    child = await ChildProcess.start(
                        plan.argv, cwd=cwd, env={**self.env.base(), **added},
                        stdout=stdout, stderr=stderr,
                    )  # fmt: skip
            except OSError as exc:
                message = f"cannot execute {plan.argv[0]!r}: {exc.strerror or exc}"
                return partial(outcome, Abort(Status.BROKEN, Reason.NOT_EXECUTABLE, message))
            watchdog = self._watch(child.pid)
            try:
                exit_, abort = await self._supervise(child, plan)
            finally:
                if watchdog is not None:
                    watchdog.forget(child.pid)
            return partial(outcome, abort, exit_=exit_, pid=child.pid)

    async def _supersede(self, lease: Lease) -> None:
        """
        Stop this consumer's run of a trial the store has just leased to it again.

        The store gives a trial out again only once the running attempt's lease is gone (it was
        reclaimed after a freeze or a late beat): that run's result could never be recorded, so
        it is stopped as lost, and its processes are gone before the new attempt starts. One run
        of a trial at a time, and the newest lease is the one that counts.
        """
        message = (
            f"the store leased the trial again (attempt {lease.token}): this run's lease is gone"
        )
        running = self._running[lease.trial_id]
        logger.warning("%s; stopping it", message, extra={"trial_id": lease.trial_id})
        running.abort_with(Abort(Status.LOST, Reason.LEASE_LOST, message))
        if running.done is None:
            running.done = anyio.Event()
        await running.done.wait()

    def _watch(self, pgid: int) -> Watchdog | None:
        if not self._use_watchdog:
            return None
        if self._watchdog is None:
            self._watchdog = Watchdog(self.grace)
        self._watchdog.register(pgid)
        return self._watchdog

    async def _prepare(self, plan: Plan) -> _Logs:
        """
        Create the trial's files; return its logs, open.

        On a local disk this takes about a tenth of a millisecond, less than a hop to a thread
        costs, so it is done inline. Where it has lately taken over a millisecond (a network
        file system, a disk busy with deletions), threads do it, off the event loop, and one
        trial in 8 is still prepared inline to notice when the disk is fast again (a time
        measured in a thread includes its waits for the interpreter lock). Past 50 ms, no
        trial is prepared inline (the event loop would stall with it): the threads' times,
        then mostly the disk's, tell when it is worth trying again.
        """
        while plan.paths.working_dir in self._finishing:  # the same files, still being read
            await anyio.lowlevel.checkpoint()
        self._prepared += 1
        average = self._prepare_seconds
        try:
            if average < _INLINE_PREPARE_SECONDS or (
                average < _PROBE_LIMIT and self._prepared % 8 == 0
            ):
                return self._measured(plan)
            if average < _PROBE_LIMIT:
                run = partial(prepare_sync, plan, self._made_dirs)
            else:
                run = partial(self._measured, plan)
            return await anyio.to_thread.run_sync(run, limiter=self._io_limiter)
        except OSError as exc:
            # a full or read-only disk, too many open files: this host's fault, not the trial's
            raise TrialFilesError(str(plan.paths.working_dir), exc) from exc

    def _measured(self, plan: Plan) -> _Logs:
        start = time.perf_counter()
        try:
            return prepare_sync(plan, self._made_dirs)
        finally:
            took = time.perf_counter() - start
            self._prepare_seconds += (took - self._prepare_seconds) * 0.25  # a moving average

    async def _supervise(self, child: ChildProcess, plan: Plan) -> tuple[Exit | None, Abort | None]:
        trial = plan.trial
        running = self._running[trial.id] = Running(child)
        timeout = trial.timeout or self.timeout
        if timeout is not None:
            running.scope.deadline = anyio.current_time() + timeout
        try:
            with running.scope:
                await self._wait(child, plan, running)
            if running.scope.cancelled_caught and running.abort is None:  # the deadline
                message = f"timed out after {timeout:g} s"
                running.abort = Abort(Status.BROKEN, Reason.TIMEOUT, message)
        finally:
            exit_ = await child.stop(self.grace)
            del self._running[trial.id]
            if running.done is not None:
                running.done.set()
        return exit_, running.abort

    async def _wait(self, child: ChildProcess, plan: Plan, running: Running) -> None:
        """Wait for the script to exit, with whatever watches it alongside (in tasks)."""
        if (
            (plan.lease is None or self.store is None)
            and not self.echo
            and self.on_metric is None
            and self.stall_timeout is None
        ):
            await child.wait()  # nothing to watch: no task group
            return
        async with anyio.create_task_group() as tg:
            watchers = _Watchers(tg)
            self._start_watchers(watchers, plan, running)
            await child.wait()
            watchers.stop()

    def _start_watchers(self, watchers: _Watchers, plan: Plan, running: Running) -> None:
        if plan.lease is not None and self.store is not None:
            lost = partial(abort_as, running, Status.LOST, Reason.LEASE_LOST)
            watchers.start(partial(beat, self.store, plan.lease, interval=self.heartbeat,
                                   max_failures=self.heartbeat_failures, on_lost=lost))  # fmt: skip
        if self.echo:
            watchers.start(partial(echo, plan.trial.id, plan.paths.stdout, plan.paths.stderr))
        if self.on_metric is not None or self.stall_timeout is not None:
            stalled = partial(abort_as, running, Status.BROKEN, Reason.STALLED)
            watchers.start(partial(
                follow, trial_id=plan.trial.id, attempt=plan.trial.attempt,
                metrics_path=plan.paths.metrics, logs=(plan.paths.stdout, plan.paths.stderr),
                on_metric=self.on_metric, stall_timeout=self.stall_timeout, on_stall=stalled,
            ))  # fmt: skip

    def _outcome(self, plan: Plan, started_at: datetime, abort: Abort | None,
                 **fields: Any) -> Outcome:  # fmt: skip
        exit_: Exit | None = fields.get("exit_")
        results = None
        if exit_ is not None and abort is None:
            results = read_results_of(plan, self.max_results_bytes, self.base_dir)
        verdict = classify(exit_, abort, interrupt_code=self.interrupt_code, results=results)
        return build_outcome(plan, started_at, verdict, host=self.host, **fields)


class _Watchers:
    """
    The tasks watching one running trial, each in a cancel scope of its own.

    Stopping them through their own scopes, not by cancelling their task group, leaves no
    reference cycles behind on asyncio (a cancelled task's error and traceback make one).
    """

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._scopes: list[anyio.CancelScope] = []

    def start(self, watcher: Callable[[], Awaitable[None]]) -> None:
        """Start ``watcher()`` in a task of the group."""
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        self._tg.start_soon(_run_within, scope, watcher)

    def stop(self) -> None:
        """Stop every watcher (they end at their next await)."""
        for scope in self._scopes:
            scope.cancel()


async def _run_within(scope: anyio.CancelScope, watcher: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await watcher()


def _utf8(trial: Trial, config: str | None) -> bytes | None:
    """A rendered config file as bytes, or a clear error before anything starts."""
    if config is None:
        return None
    try:
        return config.encode()
    except UnicodeEncodeError as exc:
        msg = f"trial {trial.id!r}: its config file cannot be written as UTF-8: {exc}"
        raise TemplateError(msg) from None


def _positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            msg = f"{name} must be positive, not {value}"
            raise ValueError(msg)
