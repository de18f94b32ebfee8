"""An attempt's plan: everything decided about it before anything starts, or why it cannot run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from .._errors import TemplateError
from .._models import Lease, Trial
from .command import CommandTemplate, ConfigTemplate
from .files import params_json
from .paths import TrialPaths, trial_paths

__all__ = ["Plan", "Planner"]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided about an attempt before anything starts."""

    trial: Trial
    lease: Lease | None
    paths: TrialPaths
    argv: list[str]
    params_json: bytes
    config_bytes: bytes | None
    on_metric: Callable[[Any], object] | None = None
    """The trial's own metrics callback (instead of the consumer's): see ``Consumer.run``."""


class _Names(TypedDict):
    """The built-in values a template may name, besides the trial's parameters."""

    trial_id: str
    attempt: int
    experiment: str
    paths: TrialPaths


@dataclass(frozen=True, slots=True)
class Planner:
    """Renders a trial's command line, config file and paths: its plan."""

    command: CommandTemplate
    config: ConfigTemplate | None
    base_dir: Path

    def plan(self, trial: Trial, lease: Lease | None) -> Plan:
        """
        The plan of one attempt of ``trial``.

        Raises:
            TemplateError: an unknown placeholder, or a value that cannot be written.
        """
        suffix = self.config.suffix if self.config else None
        paths = trial_paths(self.base_dir, trial, suffix)
        if lease is None and os.path.isdir(os.path.dirname(paths.text.results)):
            # a trial id used again (a second run of a program whose trials are t0, t1...):
            # the earlier run's attempt keeps its files; this one takes the next free number
            trial = _free_attempt(self.base_dir, trial, suffix)
            paths = trial_paths(self.base_dir, trial, suffix)
        names = _Names(
            trial_id=trial.id, attempt=trial.attempt, experiment=trial.experiment, paths=paths
        )
        argv = self.command.render(trial.params, **names)
        text = self.config.render(trial.params, **names) if self.config is not None else ""
        config = _utf8(trial, text) if text else None
        return Plan(trial, lease, paths, argv, params_json(trial), config)

    def next_attempt(self, plan: Plan) -> Plan:
        """The plan of the attempt after ``plan``'s (a retry: never under a lease)."""
        trial = plan.trial.model_copy(update={"attempt": plan.trial.attempt + 1})
        return replace(self.plan(trial, None), on_metric=plan.on_metric)


def _free_attempt(base_dir: Path, trial: Trial, suffix: str | None) -> Trial:
    """``trial`` at the first attempt number, from its own, whose directory does not exist."""
    number = trial.attempt
    while os.path.isdir(os.path.dirname(trial_paths(base_dir, trial, suffix).text.results)):
        number += 1
        trial = trial.model_copy(update={"attempt": number})
    return trial


def _utf8(trial: Trial, config: str) -> bytes:
    """A rendered config file as bytes, or a clear error before anything starts."""
    try:
        return config.encode()
    except UnicodeEncodeError as exc:
        msg = f"trial {trial.id!r}: its config file cannot be written as UTF-8: {exc}"
        raise TemplateError(msg) from None
