"""
``Consumer``: the public face over the parts that run trials (see docs/design-notes.md).

Each part has one job: :class:`Admission` admits attempts under the concurrency limit and
retries them; :func:`run_attempt` runs one attempt top to bottom; the :class:`Supervisor`
starts, watches and stops scripts; :class:`TrialFiles` creates their files; planning, results
and classification live in ``_trial``. This class checks the settings, builds the parts once,
and hands each call to the part that does it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Self

from ._admission import Admission, Place
from ._attempt import AttemptParts
from ._batch import Batch, open_batch, run_map
from ._models import Lease, Outcome, Trial
from ._retry import RetryPolicy
from ._settings import check_limits, positive
from ._slots import SlotPool
from ._supervise.beats import BeatCoalescer
from ._supervise.contain import Limits, choose
from ._supervise.heartbeat import HeartbeatTarget
from ._supervise.metrics import MetricCallback, check_callback
from ._supervise.supervisor import Supervision, Supervisor
from ._trial.codeversion import CodeChangePolicy, CodeVersionWatch
from ._trial.command import CommandTemplate, ConfigTemplate
from ._trial.environment import EnvPolicy
from ._trial.plan import Planner
from ._trial.readback import DEFAULT_MAX_RESULTS_BYTES
from ._trial.workspace import TrialFiles

__all__ = ["Consumer", "beats_of"]


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
        heartbeat_failures: heartbeats failing in a row before a trial counts as lost (an
            unreachable store or a hanging call is waited out for this many intervals).
        stall_timeout: seconds without new metrics or output before a trial counts as stalled.
        on_metric: called with each :class:`Metric` line a script reports, in order, each once,
            the last ones after the script has ended; a plain function (``async def`` is
            refused). If it raises, the trial is stopped and the error reaches the caller.
        slots: named resources, e.g. ``{"gpu": ["0", "1"]}``, handed out per a trial's demand.
        retry: which failed attempts run again (an int is a number of retries).
        experiment_id: given to scripts as ``ASYNC_CONSUMER_EXPERIMENT_ID`` (default: the name).
        experiment_version: given to scripts as ``ASYNC_CONSUMER_EXPERIMENT_VERSION``.
        watchdog: start a watchdog process that kills the trials' process groups if this
            process dies without stopping them (SIGKILL, OOM killer); call :meth:`close` (or
            use ``async with``) when done.
        echo: copy each script's output to this process's stdout and stderr as it comes,
            every line prefixed with ``[trial id]`` (the log files keep it all too).
        child_watcher: on asyncio, install :func:`install_child_watcher` with the first
            script (a process-wide change, so off unless asked for; the command turns it on).
            Trials do not need it: their scripts are reaped by the consumer itself.
        limits: what each trial may use (:class:`Limits`), or :class:`LimitsUnavailable`.
        containment: how no process outlives its trial: ``auto`` or a mode (README).

    Its configuration is fixed once made: make another consumer to run with other settings.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        base_dir: str | os.PathLike[str] = ".async-consumer/trials",
        run_in_working_dir: bool = False,
        config_template: str | os.PathLike[str] | ConfigTemplate | None = None,
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
        child_watcher: bool = False,
        limits: Limits | None = None,
        containment: str = "auto",
    ) -> None:
        positive(timeout=timeout, heartbeat=heartbeat, stall_timeout=stall_timeout)
        positive(max_concurrency=max_concurrency, max_results_bytes=max_results_bytes)
        check_limits(grace, interrupt_code, heartbeat_failures)
        check_callback(on_metric)
        config = None if config_template is None else ConfigTemplate.of(config_template)
        self._planner = Planner(CommandTemplate(command), config, Path(base_dir).absolute())
        self._supervisor = Supervisor(
            Supervision(
                timeout=timeout,
                grace=grace,
                store=store,
                heartbeat=heartbeat,
                heartbeat_failures=heartbeat_failures,
                stall_timeout=stall_timeout,
                on_metric=on_metric,
                echo=echo,
                watchdog=watchdog,
                child_watcher=child_watcher,
                containment=choose(containment, limits or Limits()),
            )
        )
        self._code = CodeVersionWatch(CodeChangePolicy(code_change))
        allow = None if env_allow is None else tuple(env_allow)
        self._parts = AttemptParts(
            supervisor=self._supervisor,
            files=TrialFiles(),
            slots=SlotPool(slots or {}),
            code=self._code,
            env=EnvPolicy(allow=allow, deny=tuple(env_deny), extra=dict(env or {})),
            base_dir=self._planner.base_dir,
            run_in_working_dir=run_in_working_dir,
            interrupt_code=interrupt_code,
            max_results_bytes=max_results_bytes,
            experiment_id=experiment_id,
            experiment_version=experiment_version,
            host=socket.gethostname(),
        )
        self._max_concurrency = max_concurrency or os.cpu_count() or 1
        retry = RetryPolicy.of(retry) if isinstance(retry, int) else retry
        self._admission = Admission(self._planner, self._parts, retry, self._max_concurrency)

    # -- configuration, read-only ----------------------------------------------------------

    @property
    def command(self) -> CommandTemplate:
        """The command line template."""
        return self._planner.command

    @property
    def base_dir(self) -> Path:
        """Where trial working directories are created (absolute)."""
        return self._planner.base_dir

    @property
    def retry(self) -> RetryPolicy:
        """Which failed attempts run again."""
        return self._admission.retry

    @property
    def max_concurrency(self) -> int:
        """The most scripts running at once."""
        return self._max_concurrency

    @property
    def store(self) -> HeartbeatTarget | None:
        """Where leases are kept alive."""
        return self._supervisor.settings.store

    @property
    def heartbeat(self) -> float:
        """Seconds between two heartbeats."""
        return self._supervisor.settings.heartbeat

    @property
    def host(self) -> str:
        """This host's name, as recorded in outcomes."""
        return self._parts.host

    @property
    def is_halted(self) -> bool:
        """Whether :meth:`interrupt` (or :meth:`kill`) was called: no new trial starts."""
        return self._supervisor.is_halted

    @property
    def running(self) -> list[str]:
        """The ids of the trials whose scripts are running now."""
        return list(self._supervisor.running)

    # -- running trials --------------------------------------------------------------------

    def place(self) -> Place:
        """
        A place among the ``max_concurrency`` for one script, to take before there is a trial.

        ``async with consumer.place() as place`` waits until fewer than ``max_concurrency``
        scripts run; then a trial fetched (a lease reserved, a sampler asked) starts at once with
        ``run(trial, place=place)``, which gives the place back as soon as the script ends.
        """
        return self._admission.place()

    async def run(
        self,
        trial: Trial | Lease,
        *,
        place: Place | None = None,
        on_metric: MetricCallback | None = None,
    ) -> Outcome:
        """
        Run a trial's script until it ends, and return the outcome of its last attempt.

        A :class:`Lease` runs once, its heartbeat kept by ``store``; a :class:`Trial` is retried as
        ``retry`` says. A failing script is an outcome, never an exception. Cancelling the caller
        stops the script's whole process group, then re-raises the cancellation. A held ``place``
        (:meth:`place`) is not waited for. Its own ``on_metric`` answering ``True`` prunes it.

        Raises:
            TemplateError: the command or config names an unknown placeholder (nothing started).
            SlotError: the trial asks for more slots than the consumer has (nothing started).
            ValueError: a trial with the same id is already running in this consumer, or
                ``place`` is another consumer's.
        """
        outcome = await self._admission.run(self._admission.plan_of(trial, on_metric), None, place)
        assert outcome is not None  # no gate: it always starts
        return outcome

    def completed_earlier(self, lease: Lease) -> Outcome | None:
        """The lease's outcome from an earlier attempt that completed unrecorded (its files)."""
        return self._admission.completed_earlier(lease)

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
        return open_batch(self._admission, trials, max_broken)

    async def map(
        self, trials: Iterable[Trial | Lease], *, max_broken: int | None = None
    ) -> list[Outcome | None]:
        """Run trials concurrently; their outcomes in input order (``None``: never started)."""
        return await run_map(self._admission, list(trials), max_broken)

    def check(self, trial: Trial) -> None:
        """
        Raise if the trial could not be run as asked, before anything starts.

        Raises:
            TemplateError: an unknown placeholder in the command or the config template.
            SlotError: more slots asked for than exist.
        """
        self._admission.plan_of(trial)

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, trial_id: str) -> bool:
        """
        Stop a running trial (SIGTERM, grace, SIGKILL); its outcome is interrupted, ``stopped``.

        Returns when its processes are gone: ``True`` if it was running, ``False`` if not.
        """
        return await self._supervisor.stop(trial_id)

    def interrupt(self) -> None:
        """Stop every running trial gracefully and start no new one (their outcome: interrupted)."""
        self._supervisor.interrupt()

    def kill(self) -> None:
        """SIGKILL every running trial's process group at once."""
        self._supervisor.kill()

    def close(self) -> None:
        """Stop the watchdog process, if one was started (trials must have ended)."""
        self._supervisor.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def beats_of(consumer: Consumer) -> BeatCoalescer | None:
    """
    What renews the consumer's running trials' leases, one write a tick, if its store renews
    many: for the worker's traffic log, not part of the public ``Consumer``.
    """
    return consumer._supervisor.beats
