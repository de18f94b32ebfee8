"""
Read a results file warily: never through a symlink, never past a size, never a FIFO or device.

:func:`read_results_below` reads an attempt's through the directories the consumer made.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .._errors import InvalidResults, MissingResults, ResultsError
from .._models import Result
from .paths import TrialPaths
from .results import WHOLE_FILE, parse_results

__all__ = ["DEFAULT_MAX_RESULTS_BYTES", "read_results", "read_results_below"]

DEFAULT_MAX_RESULTS_BYTES = 1024 * 1024
"""The largest results file read by default: 1 MiB, far above any real one."""

_CHUNK = 64 * 1024
# O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO from blocking the open, O_NOCTTY keeps a
# terminal from becoming ours
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def read_results_below(
    paths: TrialPaths, max_bytes: int, base_dir: Path
) -> tuple[Result, ...] | ResultsError:
    """
    The attempt's validated results, or why they cannot be accepted.

    The file is opened through the directories the consumer made, one at a time and never
    through a symlink, so a script (or a daemon it left behind) that swaps its working directory
    or its experiment's for a link cannot make us read a file from elsewhere, even meanwhile.
    """
    attempt_dir = paths.results.parent
    dir_fd = _open_below(base_dir, attempt_dir)
    if dir_fd is None:
        problem = f"{WHOLE_FILE}: the attempt's directory {attempt_dir} was removed or replaced"
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


def read_results(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_RESULTS_BYTES,
    base_dir: str | os.PathLike[str] | None = None,
    dir_fd: int | None = None,
) -> tuple[Result, ...]:
    """
    Read and validate a results file, inline: it is small, and a thread hop costs more.

    Args:
        path: the results file. A symbolic link or anything but a regular file is refused.
        max_bytes: the largest size accepted; a larger file is refused without being read.
        base_dir: if given, the file's directory (symbolic links resolved) must lie inside it.
        dir_fd: if given, an open directory: the file named ``path`` is opened inside it, by its
            last component, so that nothing swapped into the path meanwhile is followed.

    Returns:
        The validated results, as :func:`parse_results` returns them.

    Raises:
        MissingResults: the file does not exist, or is empty.
        InvalidResults: the file cannot be accepted; the message says why.
        ValueError: ``max_bytes`` is negative or ``path`` holds a NUL character.
    """
    name = os.fspath(path)
    if max_bytes < 0:
        msg = f"max_bytes must not be negative, got {max_bytes}"
        raise ValueError(msg)
    if "\x00" in name:
        msg = "path must not contain a NUL character"
        raise ValueError(msg)
    if base_dir is not None:
        _check_inside(name, os.fspath(base_dir))
    return parse_results(_read_capped(name, max_bytes, dir_fd), path=name)


def _check_inside(name: str, base_dir: str) -> None:
    """Refuse a file whose real directory is not inside the real ``base_dir``."""
    try:
        parent = os.path.realpath(os.path.dirname(os.path.abspath(name)))
        base = os.path.realpath(base_dir)
    except (OSError, ValueError) as exc:
        raise InvalidResults(name, [f"{WHOLE_FILE}: cannot resolve its directory: {exc}"]) from exc
    if os.path.commonpath([parent, base]) != base:
        problem = f"{WHOLE_FILE}: its directory {parent} is outside the base directory {base}"
        raise InvalidResults(name, [problem])


def _read_capped(name: str, max_bytes: int, dir_fd: int | None = None) -> bytes:
    """Open without following a symlink or blocking, check the kind and size, read the bytes."""
    try:
        if dir_fd is None:
            fd = os.open(name, _OPEN_FLAGS)
        else:
            fd = os.open(os.path.basename(name), _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _open_error(name, exc) from exc
    try:
        _check_regular(name, os.fstat(fd), max_bytes)
        raw = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise InvalidResults(
            name, [f"{WHOLE_FILE}: cannot be read: {exc.strerror or exc}"]
        ) from exc
    finally:
        os.close(fd)
    if len(raw) > max_bytes:  # it grew after fstat
        raise InvalidResults(name, [_too_large(f"at least {len(raw)}", max_bytes)])
    return raw


def _open_error(name: str, exc: OSError) -> MissingResults | InvalidResults:
    """Translate an error from ``os.open`` into ours."""
    if exc.errno == errno.ENOENT:
        return MissingResults(name, [f"{WHOLE_FILE}: does not exist"])
    try:
        kind = _kind(os.lstat(name).st_mode)
    except OSError:
        kind = None
    if kind is not None:  # ELOOP for a symlink, ENXIO for a socket
        return InvalidResults(name, [f"{WHOLE_FILE}: is {kind}, not a regular file"])
    return InvalidResults(name, [f"{WHOLE_FILE}: cannot be opened: {exc.strerror or exc}"])


def _check_regular(name: str, status: os.stat_result, max_bytes: int) -> None:
    """Refuse anything but a regular file, and a file over the size limit."""
    kind = _kind(status.st_mode)
    if kind is not None:
        raise InvalidResults(name, [f"{WHOLE_FILE}: is {kind}, not a regular file"])
    if status.st_size > max_bytes:
        raise InvalidResults(name, [_too_large(str(status.st_size), max_bytes)])


def _kind(mode: int) -> str | None:
    """Name what a file is, or ``None`` for a regular file."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    if stat.S_ISREG(mode):
        return None
    return next((kind for is_kind, kind in kinds if is_kind(mode)), "an unknown kind of file")


def _too_large(size: str, max_bytes: int) -> str:
    """Say that a file is over the size limit."""
    return f"{WHOLE_FILE}: is {size} bytes, larger than the limit of {max_bytes} bytes"


def _read_at_most(fd: int, limit: int) -> bytes:
    """Read until end of file or ``limit`` bytes, whichever comes first."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
