"""
What an experiment runs: its command, config template and code version, one record a version.

A store keeps one :class:`Experiment` per version. Running under an experiment's name with a
different command is refused (the old results would be mixed with the new ones silently); the user
picks a new name or a new version, which runs every trial again and keeps the old records.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Experiment", "differences"]


class Experiment(BaseModel):
    """
    One version of an experiment, as a store records it.

    Attributes:
        name: the experiment's name.
        version: 1 for the first; each new version runs every trial again.
        command: the command template, one argv item each, placeholders unrendered.
        config: the config template's text, if there is one.
        code_version: the git state of the script's code when the version began, if known.
        created_at: when the store recorded it (the store's clock).
        maximize: higher objectives are better (default: lower is better). Stored once, with
            the version: every command that ranks the experiment's trials reads it here.
        search: what it searches, if it is a search (the plan's JSON: its space, sampler,
            pruner, seed, metric and total number of trials).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    command: tuple[str, ...]
    config: str | None = None
    code_version: str | None = None
    created_at: datetime | None = None
    maximize: bool = False
    search: str | None = None


def differences(recorded: Experiment, asked: Experiment) -> list[str]:
    """
    What ``asked`` changes of ``recorded``, one phrase each (empty: the same experiment).

    The code version is not compared: code changing between runs is the researcher's
    business (``--code-change`` covers changes during a run).
    """
    changes = []
    if recorded.command != asked.command:
        changes.append(f"the command was {_argv(recorded.command)}, now {_argv(asked.command)}")
    if recorded.config != asked.config:
        changes.append("the config template's text changed")
    if recorded.maximize != asked.maximize:
        changes.append(f"it was run with {_direction(recorded)}, now {_direction(asked)}")
    changes.extend(_search_changes(recorded.search, asked.search))
    return changes


def _search_changes(recorded: str | None, asked: str | None) -> list[str]:
    """What changes of the search: its space, sampler, pruner, seed or metric (not its total)."""
    if recorded == asked:
        return []
    if recorded is None or asked is None:
        return ["it was a search, now it is not" if asked is None else "it is a search now"]
    was, now = json.loads(recorded), json.loads(asked)
    changes = []
    if was.get("space") != now.get("space"):
        changes.append("the search space changed")
    changes.extend(
        f"the {key} was {was.get(key)}, now {now.get(key)}"
        for key in ("sampler", "pruner", "seed", "metric")
        if was.get(key) != now.get(key)
    )
    return changes


def _direction(experiment: Experiment) -> str:
    return "--maximize" if experiment.maximize else "--minimize"


def _argv(argv: tuple[str, ...]) -> str:
    return repr(shlex.join(argv))
