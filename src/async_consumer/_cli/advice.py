"""The closing lines of a run: what is left to do about the trials that did not complete."""

from __future__ import annotations

from .._models import TrialStatus

__all__ = ["advice", "parse_rerun", "plural"]

_RERUNNABLE = {"broken": TrialStatus.BROKEN, "interrupted": TrialStatus.INTERRUPTED}


def parse_rerun(text: str) -> frozenset[TrialStatus]:
    """
    ``--rerun broken,interrupted`` as statuses.

    Raises:
        ValueError: a word that is not ``broken`` or ``interrupted``.
    """
    words = [w.strip() for w in text.split(",") if w.strip()]
    wrong = [w for w in words if w not in _RERUNNABLE]
    if wrong or not words:
        msg = f"--rerun {text!r}: expected broken, interrupted or broken,interrupted"
        raise ValueError(msg)
    return frozenset(_RERUNNABLE[w] for w in words)


_ADVICE = {
    TrialStatus.INTERRUPTED: "{trials} interrupted (the script exited with the interrupt code): "
    "run the same command again to resume {them} (a `worker --follow` on this store resumes "
    "{them} by itself, after a backoff)",
    TrialStatus.BROKEN: "{trials} broken: once the script is fixed, run the same command with "
    "--rerun broken placed before its -- (an option of run, not of the script) to run {them} "
    "again (failed attempts are kept)",
    TrialStatus.PRUNED: "{trials} pruned: stopped early by the search's pruner",
}
"""What to do about the trials of each status that did not complete."""


def advice(
    counts: dict[TrialStatus, int], *, follow: bool = False, max_broken: int | None = None
) -> list[str]:
    """
    One line for each kind of trial of the parameter set that did not complete
    (``max_broken``: the limit that stopped the run, if it did).
    """
    lines = []
    for status, text in _ADVICE.items():
        n = counts.get(status, 0)
        # a following worker resumes interrupted trials by itself
        if n and not (follow and status is TrialStatus.INTERRUPTED):
            lines.append(text.format(trials=_trials(n), them=_them(n)))
    waiting = counts.get(TrialStatus.NEW, 0) + counts.get(TrialStatus.RESERVED, 0)
    if waiting and max_broken is not None:
        lines.append(
            f"{_trials(waiting)} not run: --max-broken {max_broken} stopped the run after "
            f"{_trials(max_broken)} broke"
        )
    elif waiting:
        lines.append(f"{_trials(waiting)} not run yet or still running elsewhere")
    return lines


def _them(count: int) -> str:
    return "it" if count == 1 else "them"


def _trials(count: int) -> str:
    return plural(count, "trial")


def plural(count: int, noun: str) -> str:
    """``1 trial``, ``2 trials``: a count and its noun, in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
