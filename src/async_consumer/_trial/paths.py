"""Where one attempt's files live: a directory under the consumer's base, named safely."""

from __future__ import annotations

import hashlib
import os
import re
from os import PathLike
from pathlib import Path
from typing import ClassVar, NamedTuple, TypeAlias, overload

from .._models import Trial

__all__ = ["ATTEMPTS", "PathTexts", "TrialPaths", "safe_name", "trial_paths"]

StrPath: TypeAlias = "str | PathLike[str]"

ATTEMPTS = "attempts"
"""The directory, inside a trial's working directory, that holds one directory per attempt."""
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class PathTexts(NamedTuple):
    """An attempt's paths as text, as :class:`TrialPaths` keeps them."""

    working_dir: str
    results: str
    params: str
    metrics: str
    stdout: str
    stderr: str
    config: str | None = None


class _AsPath:
    """A read-only :class:`TrialPaths` attribute: the ``text`` of the same name, as a ``Path``."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type[TrialPaths], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, paths: None, owner: type[TrialPaths]) -> _AsPath: ...
    @overload
    def __get__(self, paths: TrialPaths, owner: type[TrialPaths] | None = None) -> Path: ...
    def __get__(
        self, paths: TrialPaths | None, owner: type[TrialPaths] | None = None
    ) -> Path | _AsPath:
        if paths is None:
            return self
        text: str = getattr(paths.text, self._name)
        return Path(text)

    def __set__(self, paths: TrialPaths, value: object) -> None:
        # read-only, as a property without a setter is (and so shown with its doc by help())
        msg = f"TrialPaths is read-only: cannot set {self._name!r}"
        raise AttributeError(msg)


class TrialPaths:
    """
    Where one attempt's files live, and the built-in values a template may name.

    Each attribute is a :class:`~pathlib.Path`; :attr:`text` holds the same paths as text. They
    are kept as text (every running trial holds its paths: 10,000 of them as ``Path`` objects
    took 30 MiB on Python 3.11, where each parses and keeps its parts).
    """

    __slots__ = ("text",)
    text: PathTexts

    def __init__(
        self,
        working_dir: StrPath,
        results: StrPath,
        params: StrPath,
        metrics: StrPath,
        stdout: StrPath,
        stderr: StrPath,
        config: StrPath | None = None,
    ) -> None:
        text = PathTexts(
            os.fspath(working_dir),
            os.fspath(results),
            os.fspath(params),
            os.fspath(metrics),
            os.fspath(stdout),
            os.fspath(stderr),
            None if config is None else os.fspath(config),
        )
        object.__setattr__(self, "text", text)

    @classmethod
    def _of(cls, text: PathTexts) -> TrialPaths:
        paths = cls.__new__(cls)
        object.__setattr__(paths, "text", text)
        return paths

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"TrialPaths is read-only: cannot set {name!r}"
        raise AttributeError(msg)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrialPaths) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.text._asdict().items())
        return f"TrialPaths({fields})"

    # each a Path made from text on each read (class-level descriptors)
    working_dir: ClassVar[_AsPath] = _AsPath(
        "The trial's working directory, shared by its attempts."
    )
    results: ClassVar[_AsPath] = _AsPath(
        "The results file the script writes (``ORION_RESULTS_PATH``)."
    )
    params: ClassVar[_AsPath] = _AsPath("The trial's parameters as JSON (``params.json``).")
    metrics: ClassVar[_AsPath] = _AsPath(
        "The metrics file the script may append to, a JSON object a line."
    )
    stdout: ClassVar[_AsPath] = _AsPath("The script's standard output.")
    stderr: ClassVar[_AsPath] = _AsPath("The script's standard error.")

    @property
    def config(self) -> Path | None:
        """The rendered config file, if the consumer has a config template."""
        return None if self.text.config is None else Path(self.text.config)


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
    # joined as text: this runs twice a trial (checked, then run), and each pathlib join parses
    # its result again
    working_dir = os.path.join(base_dir, safe_name(trial.experiment), safe_name(trial.id))
    attempt_dir = f"{working_dir}/{ATTEMPTS}/{trial.attempt}/"
    return TrialPaths._of(
        PathTexts(
            working_dir,
            attempt_dir + "results.json",
            attempt_dir + "params.json",
            attempt_dir + "metrics.jsonl",
            attempt_dir + "stdout.log",
            attempt_dir + "stderr.log",
            f"{attempt_dir}config{config_suffix}" if config_suffix else None,
        )
    )
