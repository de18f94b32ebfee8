"""Where one attempt's files live: a directory under the consumer's base, named safely."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._models import Trial

__all__ = ["ATTEMPTS", "TrialPaths", "safe_name", "trial_paths"]

ATTEMPTS = "attempts"
"""The directory, inside a trial's working directory, that holds one directory per attempt."""
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class TrialPaths:
    """Where one attempt's files live, and the built-in values a template may name."""

    working_dir: Path
    results: Path
    params: Path
    metrics: Path
    stdout: Path
    stderr: Path
    config: Path | None = None


def safe_name(text: str) -> str:
    """
    A directory name for an id: the id itself when it is plain, else a slug plus a hash.

    ``../../etc``, ``a/b``, ``.`` or a 300-character id can never name a directory outside, or
    above, the one it is created in; two different ids never share a name.
    """
    if _PLAIN.fullmatch(text):
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60].strip("._-") or "trial"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def trial_paths(base_dir: Path, trial: Trial, config_suffix: str | None) -> TrialPaths:
    """
    The paths of one attempt: the trial's working directory, and the attempt's own files.

    The working directory is the trial's, shared by its attempts, so that checkpoints written
    there survive a retry or a resumption. The results, metrics, ``params.json``, config and
    logs are the attempt's, in ``attempts/<n>/`` inside it: a stale run that is still going
    (a frozen worker's) can never hand its results to another attempt.
    """
    # joined as text, then made paths: this runs twice a trial (checked, then run), and each
    # pathlib join parses its result again
    working_dir = os.path.join(base_dir, safe_name(trial.experiment), safe_name(trial.id))
    attempt_dir = f"{working_dir}/{ATTEMPTS}/{trial.attempt}/"
    return TrialPaths(
        working_dir=Path(working_dir),
        results=Path(attempt_dir + "results.json"),
        params=Path(attempt_dir + "params.json"),
        metrics=Path(attempt_dir + "metrics.jsonl"),
        stdout=Path(attempt_dir + "stdout.log"),
        stderr=Path(attempt_dir + "stderr.log"),
        config=Path(f"{attempt_dir}config{config_suffix}") if config_suffix else None,
    )
