"""What a report shows of a trial's results besides its objective, and of its later attempts."""

from __future__ import annotations

import json

from .._models import Attempt, Outcome, StoredTrial

__all__ = ["completed_later", "labelled", "statistics"]


def params_text(trial: StoredTrial) -> str:
    """The trial's parameters, as a point's label gives them."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in trial.trial.params.items())


def statistics(outcome: Outcome) -> dict[str, object]:
    """What the script reported besides its objective (statistics, constraints...), by name."""
    return {r.name: r.value for r in outcome.results if r.type != "objective"}


def labelled(trial: StoredTrial, outcome: Outcome) -> str:
    """A point's label: the trial's parameters, then the other results its attempt reported."""
    values = statistics(outcome)
    shown = ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in values.items())
    return params_text(trial) + (f" · {shown}" if shown else "")


def completed_later(trial: StoredTrial, attempt: Attempt) -> str:
    """A note in a failure's row when a later attempt of its trial completed ("" if none)."""
    done = [
        a.number
        for a in trial.attempts
        if a.number > attempt.number and a.outcome is not None and a.outcome.is_completed
    ]
    if not done:
        return ""
    return f' <span class="later">completed later (attempt {done[-1]})</span>'
