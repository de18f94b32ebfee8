"""The child's environment: the parent's, filtered, plus the trial contract's variables."""

from __future__ import annotations

import fnmatch
import functools
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .._slots import slot_environment
from .plan import Plan

__all__ = ["ORION_ALIASES", "EnvPolicy", "contract_environment", "contract_variables"]

PREFIX = "ASYNC_CONSUMER_"

ORION_ALIASES = {
    "TRIAL_ID": "ORION_TRIAL_ID",
    "WORKING_DIR": "ORION_WORKING_DIR",
    "RESULTS_PATH": "ORION_RESULTS_PATH",
    "INTERRUPT_CODE": "ORION_INTERRUPT_CODE",
    "EXPERIMENT_NAME": "ORION_EXPERIMENT_NAME",
    "EXPERIMENT_ID": "ORION_EXPERIMENT_ID",
    "EXPERIMENT_VERSION": "ORION_EXPERIMENT_VERSION",
}
"""Our variable names (without the prefix) and the Orion names they are also set under."""


def contract_variables(values: Mapping[str, str]) -> dict[str, str]:
    """
    Return the ``ASYNC_CONSUMER_*`` variables and their ``ORION_*`` aliases.

    ``values`` maps short names such as ``TRIAL_ID`` to their values.
    """
    env = {_prefixed(name): value for name, value in values.items()}
    env.update({ORION_ALIASES[n]: v for n, v in values.items() if n in ORION_ALIASES})
    return env


@functools.cache
def _prefixed(name: str) -> str:
    # one string per name, not one per trial: ten thousand running trials keep their variables
    return sys.intern(PREFIX + name)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class EnvPolicy:
    """
    Which of the consumer's own variables reach user scripts, and what is added.

    Attributes:
        allow: if given, only parent variables matching one of these shell patterns pass.
        deny: parent variables matching one of these patterns never pass (e.g. ``"PG*"`` to
            keep a database password from the scripts).
        extra: variables added for every trial (after filtering; they override the parent's).
    """

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    def base(self, parent: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every trial starts from: the parent's filtered, plus ``extra``."""
        source = os.environ if parent is None else parent
        if self.allow is None and not self.deny:
            return {**source, **self.extra}
        env = {
            name: value
            for name, value in source.items()
            if (self.allow is None or _matches(name, self.allow)) and not _matches(name, self.deny)
        }
        env.update(self.extra)
        return env


def contract_environment(
    plan: Plan,
    granted: Mapping[str, Sequence[str]],
    interrupt_code: int,
    experiment_id: str | None,
    experiment_version: int,
) -> dict[str, str]:
    """The variables the trial contract promises the script, its slots included."""
    trial, paths = plan.trial, plan.paths.text
    values = {
        "TRIAL_ID": trial.id,
        "ATTEMPT": str(trial.attempt),
        "WORKING_DIR": paths.working_dir,
        "RESULTS_PATH": paths.results,
        "PARAMS_PATH": paths.params,
        "METRICS_PATH": paths.metrics,
        "INTERRUPT_CODE": str(interrupt_code),
        "EXPERIMENT_NAME": trial.experiment,
        "EXPERIMENT_ID": experiment_id or trial.experiment,
        "EXPERIMENT_VERSION": str(experiment_version),
    }
    if paths.config is not None:
        values["CONFIG_PATH"] = paths.config
    return {**contract_variables(values), **slot_environment(granted)}
