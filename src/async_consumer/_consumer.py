"""``Consumer``: run one trial's script, supervised, and classify how it ended."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO, Self

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._batch import Batch, open_batch, run_map
from ._classify import Abort, classify
from ._codeversion import CodeChangePolicy, CodeVersionWatch
from ._command import CommandTemplate, ConfigTemplate, TrialPaths
from ._echo import echo
from ._environment import EnvPolicy, contract_variables
from ._errors import ResultsError
from ._heartbeat import HeartbeatTarget, beat
from ._metrics import MetricCallback, follow
from ._models import Lease, Outcome, Reason, Result, Status, Trial
from ._process import ChildProcess, Exit, open_log
from ._results import DEFAULT_MAX_RESULTS_BYTES, read_results
from ._retry import RetryPolicy
from ._slots import SlotPool, slot_environment
from ._watchdog import Watchdog
from ._workdir import prepare_files, tail, trial_paths

__all__ = ["Consumer"]

logger = logging.getLogger("async_consumer")


@dataclass(slots=True)
class _Running:
    """A trial whose script is running, so that it can be stopped from outside."""

    child: ChildProcess
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    abort: Abort | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def abort_with(self, abort: Abort) -> None:
        if self.abort is None:
            self.abort = abort
        self.scope.cancel()


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything decided about an attempt before anything starts."""

    trial: Trial
    lease: Lease | None
    paths: TrialPaths
    argv: list[str]
    config_text: str | None


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
        self._running: dict[str, _Running] = {}
        self._made_dirs: set[Path] = set()
        self._launching = 0
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
        outcome = await self.run_when(trial, lambda: True)
        assert outcome is not None  # the gate always opens
        return outcome

    async def run_when(self, trial: Trial | Lease, may_start: Callable[[], bool]) -> Outcome | None:
        """
        Like :meth:`run`, but ask ``may_start()`` once a place is free; ``None`` if it says no.

        Batches use this to start nothing more once ``max_broken`` is reached, even for trials
        that were already queued.
        """
        lease = trial if isinstance(trial, Lease) else None
        current = trial.trial if isinstance(trial, Lease) else trial
        self.check(current)
        while True:
            async with self._limiter:
                if not may_start():
                    return None
                outcome = await self._attempt(self._plan(current, lease))
            if lease is not None or self.is_halted or not self.retry.should_retry(outcome):
                return outcome
            delay = self.retry.delay(outcome.attempt)
            extra = {"trial_id": current.id}
            logger.warning("attempt %d %s; retrying in %.1f s", outcome.attempt, outcome.message,
                           delay, extra=extra)  # fmt: skip
            await anyio.sleep(delay)
            current = current.model_copy(update={"attempt": current.attempt + 1})

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
        self.slots.check(trial.slots)
        self._plan(trial, None)

    async def stop(self, trial_id: str) -> bool:
        """
        Stop a running trial (SIGTERM, grace, SIGKILL); its outcome is interrupted, ``stopped``.

        Returns when its processes are gone: ``True`` if it was running, ``False`` if not.
        """
        running = self._running.get(trial_id)
        if running is None:
            return False
        running.abort_with(Abort(Status.INTERRUPTED, Reason.STOPPED, "stopped by the orchestrator"))
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

    def _plan(self, trial: Trial, lease: Lease | None) -> _Plan:
        paths = trial_paths(self.base_dir, trial, self.config.suffix if self.config else None)
        kwargs = {"trial_id": trial.id, "attempt": trial.attempt, "experiment": trial.experiment}
        argv = self.command.render(trial.params, paths=paths, **kwargs)  # type: ignore[arg-type]
        config = self.config and self.config.render(trial.params, paths=paths, **kwargs)  # type: ignore[arg-type]
        return _Plan(trial, lease, paths, argv, config or None)

    def _environment(self, plan: _Plan, granted: Mapping[str, Sequence[str]]) -> dict[str, str]:
        trial, paths = plan.trial, plan.paths
        values = {
            "TRIAL_ID": trial.id,
            "ATTEMPT": str(trial.attempt),
            "WORKING_DIR": str(paths.working_dir),
            "RESULTS_PATH": str(paths.results),
            "PARAMS_PATH": str(paths.params),
            "METRICS_PATH": str(paths.metrics),
            "INTERRUPT_CODE": str(self.interrupt_code),
            "EXPERIMENT_NAME": trial.experiment,
            "EXPERIMENT_ID": self.experiment_id or trial.experiment,
            "EXPERIMENT_VERSION": str(self.experiment_version),
        }
        if paths.config is not None:
            values["CONFIG_PATH"] = str(paths.config)
        return {**contract_variables(values), **slot_environment(granted)}

    async def _attempt(self, plan: _Plan) -> Outcome:
        trial, paths = plan.trial, plan.paths
        cwd = paths.working_dir if self.run_in_working_dir else None
        started_at = datetime.now(UTC)
        outcome = partial(self._outcome, plan, started_at)
        if self.is_halted:
            return outcome(Abort(Status.INTERRUPTED, Reason.CANCELLED, "not started: interrupted"))
        if trial.id in self._running:
            msg = f"trial {trial.id!r} is already running in this consumer"
            raise ValueError(msg)
        version, changed = await self._code.check(plan.argv, cwd)
        outcome = partial(outcome, code_version=version)
        if changed and self._code.policy is CodeChangePolicy.ERROR:
            message = f"code changed since the consumer started ({self._code.initial} -> {version})"
            return outcome(Abort(Status.BROKEN, Reason.CODE_CHANGED, message))
        if changed:
            logger.warning("the code changed since the first trial: %s -> %s", self._code.initial,
                           version, extra={"trial_id": trial.id})  # fmt: skip
        async with self.slots.acquire(trial.slots) as granted:
            outcome = partial(outcome, slots=granted)
            added = self._environment(plan, granted)
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
                return outcome(Abort(Status.BROKEN, Reason.NOT_EXECUTABLE, message))
            watchdog = self._watch(child.pid)
            try:
                exit_, abort = await self._supervise(child, plan)
            finally:
                if watchdog is not None:
                    watchdog.forget(child.pid)
            return outcome(abort, exit_=exit_, pid=child.pid)

    def _watch(self, pgid: int) -> Watchdog | None:
        if not self._use_watchdog:
            return None
        if self._watchdog is None:
            self._watchdog = Watchdog(self.grace)
        self._watchdog.register(pgid)
        return self._watchdog

    async def _prepare(self, plan: _Plan) -> tuple[BinaryIO, BinaryIO]:
        """
        Create the trial's files; return its logs, open.

        Creating files costs up to a millisecond each on some disks. One trial at a time does
        it inline (a thread hop would cost more); when many trials start at once, a few
        threads do it side by side, off the event loop.
        """
        self._launching += 1
        try:
            await anyio.lowlevel.checkpoint()  # let trials starting with this one say so
            if self._launching == 1:
                return _prepare_sync(plan, self._made_dirs)
            return await anyio.to_thread.run_sync(
                _prepare_sync, plan, self._made_dirs, limiter=self._io_limiter
            )
        finally:
            self._launching -= 1

    async def _supervise(
        self, child: ChildProcess, plan: _Plan
    ) -> tuple[Exit | None, Abort | None]:
        trial = plan.trial
        running = self._running[trial.id] = _Running(child)
        timeout = trial.timeout or self.timeout
        try:
            with running.scope, anyio.move_on_after(timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    self._start_watchers(tg, plan, running)
                    await child.wait()
                    tg.cancel_scope.cancel()
            if deadline.cancelled_caught:
                running.abort_with(
                    Abort(Status.BROKEN, Reason.TIMEOUT, f"timed out after {timeout:g} s")
                )
        finally:
            exit_ = await child.stop(self.grace)
            del self._running[trial.id]
            running.done.set()
        return exit_, running.abort

    def _start_watchers(self, tg: anyio.abc.TaskGroup, plan: _Plan, running: _Running) -> None:
        if plan.lease is not None and self.store is not None:
            lost = partial(_abort_as, running, Status.LOST, Reason.LEASE_LOST)
            tg.start_soon(partial(beat, self.store, plan.lease, interval=self.heartbeat,
                                  max_failures=self.heartbeat_failures, on_lost=lost))  # fmt: skip
        if self.echo:
            tg.start_soon(echo, plan.trial.id, plan.paths.stdout, plan.paths.stderr)
        if self.on_metric is not None or self.stall_timeout is not None:
            stalled = partial(_abort_as, running, Status.BROKEN, Reason.STALLED)
            tg.start_soon(partial(
                follow, trial_id=plan.trial.id, attempt=plan.trial.attempt,
                metrics_path=plan.paths.metrics, logs=(plan.paths.stdout, plan.paths.stderr),
                on_metric=self.on_metric, stall_timeout=self.stall_timeout, on_stall=stalled,
            ))  # fmt: skip

    def _results(self, plan: _Plan) -> tuple[Result, ...] | ResultsError:
        try:
            return read_results(
                plan.paths.results,
                max_bytes=self.max_results_bytes,
                base_dir=plan.paths.working_dir,
            )
        except ResultsError as exc:
            return exc

    def _outcome(
        self,
        plan: _Plan,
        started_at: datetime,
        abort: Abort | None,
        *,
        exit_: Exit | None = None,
        pid: int | None = None,
        code_version: str | None = None,
        slots: Mapping[str, Sequence[str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Outcome:
        results = self._results(plan) if exit_ is not None and abort is None else None
        verdict = classify(exit_, abort, interrupt_code=self.interrupt_code, results=results)
        usage = exit_.usage if exit_ is not None else None
        outcome = Outcome(
            trial_id=plan.trial.id,
            attempt=plan.trial.attempt,
            status=verdict.status,
            reason=verdict.reason,
            message=verdict.message,
            results=verdict.results,
            returncode=verdict.returncode,
            signal=verdict.signal,
            argv=tuple(plan.argv),
            env=dict(env or {}),
            slots={k: tuple(v) for k, v in (slots or {}).items()},
            code_version=code_version,
            host=self.host,
            pid=pid,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            cpu_seconds=usage.cpu_seconds if usage else None,
            peak_rss_bytes=usage.peak_rss_bytes if usage else None,
            working_dir=str(plan.paths.working_dir),
            stdout_path=str(plan.paths.stdout),
            stderr_path=str(plan.paths.stderr),
            stderr_tail=tail(plan.paths.stderr) if pid is not None else "",
        )
        _log(outcome)
        return outcome


def _prepare_sync(plan: _Plan, made: set[Path]) -> tuple[BinaryIO, BinaryIO]:
    prepare_files(plan.paths, plan.trial, plan.config_text, made)
    stdout = open_log(plan.paths.stdout)
    try:
        return stdout, open_log(plan.paths.stderr)
    except BaseException:
        stdout.close()
        raise


def _abort_as(running: _Running, status: Status, reason: Reason, message: str) -> None:
    running.abort_with(Abort(status, reason, message))


def _positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            msg = f"{name} must be positive, not {value}"
            raise ValueError(msg)


def _log(outcome: Outcome) -> None:
    extra = {"trial_id": outcome.trial_id}
    if outcome.is_completed:
        logger.info("completed, objective %s", outcome.objective, extra=extra)
    else:
        level = logging.INFO if outcome.status is Status.INTERRUPTED else logging.WARNING
        logger.log(
            level, "%s (%s): %s", outcome.status, outcome.reason, outcome.message, extra=extra
        )
