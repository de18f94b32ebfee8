"""The child's environment: the parent's, filtered, plus the trial contract's variables."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ORION_ALIASES", "EnvPolicy", "contract_variables"]

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
    env = {PREFIX + name: value for name, value in values.items()}
    env.update({ORION_ALIASES[n]: v for n, v in values.items() if n in ORION_ALIASES})
    return env


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
