"""Read an attempt's results back through the directories the consumer made, never a symlink."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import MissingResults, ResultsError
from .._models import Result
from .paths import TrialPaths
from .results import read_results

__all__ = ["read_results_below"]


def read_results_below(
    paths: TrialPaths, max_bytes: int, base_dir: Path
) -> tuple[Result, ...] | ResultsError:
    """
    The attempt's validated results, or why they cannot be accepted.

    The file is opened through the directories the consumer made, one at a time and never
    through a symlink, so a script (or a daemon it left behind) that swaps its working directory
    or its experiment's for a link cannot make us read a file from elsewhere, even meanwhile.
    """
    working_dir = paths.working_dir
    dir_fd = _open_below(base_dir, working_dir)
    if dir_fd is None:
        problem = f"<file>: the working directory {working_dir} was removed or replaced"
        return MissingResults(str(paths.results), [problem])
    try:
        return read_results(paths.results, max_bytes=max_bytes, dir_fd=dir_fd)
    except ResultsError as exc:
        return _without_tracebacks(exc)
    finally:
        os.close(dir_fd)


def _without_tracebacks(exc: ResultsError) -> ResultsError:
    """
    The error, kept as a value: without its tracebacks, or those of the errors it chains to.

    A traceback holds the frames it passed through, and one of them holds the error: a cycle
    that would keep every broken trial's plan alive until the next full garbage collection.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _open_below(base: Path, target: Path) -> int | None:
    """Open ``target`` (inside ``base``) component by component, following no symlink."""
    try:
        fd = os.open(base, _DIR_FLAGS)
    except OSError:
        return None
    for part in target.relative_to(base).parts:
        try:
            next_fd: int | None = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            next_fd = None
        os.close(fd)
        if next_fd is None:
            return None
        fd = next_fd
    return fd
