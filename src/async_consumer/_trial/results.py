"""
Read and validate a trial's results file; one readable error lists every problem.

Three shapes are accepted, all written as UTF-8 JSON:

* Orion's list of ``{"name", "type", "value"}`` entries with exactly one ``objective``;
* a bare number, the objective (Orion accepts it too);
* a mapping ``{"objective": 0.1, "accuracy": 0.9}``: the objective plus one statistic per other key.

Each problem is one line ``location: what is wrong``, where the location is a path into the
document (``[2].value``, ``accuracy``) or ``<file>`` for the file as a whole.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError
from pydantic_core import from_json

from .._errors import InvalidResults, MissingResults
from .._models import FiniteFloat, Result, ResultValue

__all__ = ["DEFAULT_MAX_RESULTS_BYTES", "parse_results", "read_results"]

DEFAULT_MAX_RESULTS_BYTES = 1024 * 1024
"""The largest results file read by default: 1 MiB, far above any real one."""

_WHOLE = "<file>"
_CHUNK = 64 * 1024
# O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO from blocking the open, O_NOCTTY keeps a
# terminal from becoming ours
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_SHAPE_MESSAGE = (
    'results must be a JSON list of {"name", "type", "value"} entries, '
    'a number, or an object with the key "objective"'
)
_NO_OBJECTIVE = 'No objective found: one entry must have "type": "objective"'


class _Shorthand(BaseModel):
    """The mapping shape: ``objective`` and any other keys, each a statistic."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, ResultValue]

    objective: FiniteFloat


def _shape(value: object) -> str | None:
    """
    Name the shape of a parsed document, or ``None`` for one we refuse.

    A lone Orion entry (a mapping with ``type`` but no ``objective``) is refused as a shape, so
    its message tells the writer to put it in a list.
    """
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return None if "type" in value and "objective" not in value else "mapping"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return None


_TAGS = frozenset({"list", "mapping", "number"})
_DOCUMENT: TypeAdapter[list[Result] | float | _Shorthand] = TypeAdapter(
    Annotated[
        Annotated[list[Result], Tag("list")]
        | Annotated[FiniteFloat, Tag("number")]
        | Annotated[_Shorthand, Tag("mapping")],
        Discriminator(
            _shape, custom_error_type="results_shape", custom_error_message=_SHAPE_MESSAGE
        ),
    ]
)


def parse_results(raw: bytes, *, path: str = "<results>") -> tuple[Result, ...]:
    """
    Validate the bytes of a results file.

    Args:
        raw: the file's content.
        path: the file's name, kept on the error.

    Returns:
        The results, the objective among them (first, for a number or a mapping).

    Raises:
        MissingResults: the content is empty or only whitespace.
        InvalidResults: anything else wrong; its ``problems`` list every problem found.
    """
    if not raw or raw.isspace():
        raise MissingResults(path, [f"{_WHOLE}: file is empty: the script wrote no results"])
    try:
        document = _DOCUMENT.validate_json(raw)
    except ValidationError as exc:
        raise InvalidResults(path, _encoding_problems(raw) or _schema_problems(exc, raw)) from exc
    except (RecursionError, ValueError) as exc:  # pydantic bounds nesting; this is a safety net
        raise InvalidResults(path, [f"{_WHOLE}: cannot be parsed: {exc}"]) from exc
    results = _to_results(document)
    problems = _objective_problems([result.type for result in results])
    if problems:
        raise InvalidResults(path, problems)
    return results


def _to_results(document: list[Result] | float | _Shorthand) -> tuple[Result, ...]:
    """Turn a validated document of any shape into Orion's list of results."""
    if isinstance(document, list):
        return tuple(document)
    if isinstance(document, float):
        return (Result(name="objective", type="objective", value=document),)
    statistics = document.__pydantic_extra__.items()
    return (
        Result(name="objective", type="objective", value=document.objective),
        *(Result(name=name, type="statistic", value=value) for name, value in statistics),
    )


def _encoding_problems(raw: bytes) -> list[str]:
    """Name the first byte that is not UTF-8, if any."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        return [f"{_WHOLE}: not UTF-8: byte 0x{byte:02x} at offset {exc.start} ({exc.reason})"]
    return []


def _schema_problems(exc: ValidationError, raw: bytes) -> list[str]:
    """List pydantic's errors as ``location: message`` lines, then the objective count."""
    errors = exc.errors(include_url=False)
    problems = [_problem(error["loc"], error["type"], error["msg"]) for error in errors]
    if not any(error["type"] == "json_invalid" for error in errors):
        problems += _objective_problems(_entry_types(raw))
    return problems


def _problem(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    """Write one pydantic error as a line; a mapping without its objective says so plainly."""
    if kind == "missing" and loc == ("mapping", "objective"):
        return f'{_WHOLE}: No objective found: a mapping of results needs the key "objective"'
    return f"{_location(loc)}: {message}"


def _entry_types(raw: bytes) -> list[object] | None:
    """The ``type`` of each entry of a list document, or ``None`` when it is not a list."""
    try:
        document = from_json(raw)
    except (RecursionError, ValueError):
        return None
    if not isinstance(document, list):
        return None
    return [entry.get("type") if isinstance(entry, dict) else None for entry in document]


def _objective_problems(types: list[object] | None) -> list[str]:
    """Demand exactly one objective among the entries' types; ``None`` means not a list."""
    if types is None:
        return []
    where = [index for index, kind in enumerate(types) if kind == "objective"]
    if not where:
        return [f"{_WHOLE}: {_NO_OBJECTIVE}"]
    first = where[0]
    return [
        f"[{i}]: another objective, after the one at [{first}]; only one is allowed"
        for i in where[1:]
    ]


def _location(loc: tuple[int | str, ...]) -> str:
    """Write pydantic's location as a path like ``[2].value``, without the shape's tag."""
    if loc and loc[0] in _TAGS:
        loc = loc[1:]
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or _WHOLE


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
        raise InvalidResults(name, [f"{_WHOLE}: cannot resolve its directory: {exc}"]) from exc
    if os.path.commonpath([parent, base]) != base:
        problem = f"{_WHOLE}: its directory {parent} is outside the base directory {base}"
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
        raise InvalidResults(name, [f"{_WHOLE}: cannot be read: {exc.strerror or exc}"]) from exc
    finally:
        os.close(fd)
    if len(raw) > max_bytes:  # it grew after fstat
        raise InvalidResults(name, [_too_large(f"at least {len(raw)}", max_bytes)])
    return raw


def _open_error(name: str, exc: OSError) -> MissingResults | InvalidResults:
    """Translate an error from ``os.open`` into ours."""
    if exc.errno == errno.ENOENT:
        return MissingResults(name, [f"{_WHOLE}: does not exist"])
    try:
        kind = _kind(os.lstat(name).st_mode)
    except OSError:
        kind = None
    if kind is not None:  # ELOOP for a symlink, ENXIO for a socket
        return InvalidResults(name, [f"{_WHOLE}: is {kind}, not a regular file"])
    return InvalidResults(name, [f"{_WHOLE}: cannot be opened: {exc.strerror or exc}"])


def _check_regular(name: str, status: os.stat_result, max_bytes: int) -> None:
    """Refuse anything but a regular file, and a file over the size limit."""
    kind = _kind(status.st_mode)
    if kind is not None:
        raise InvalidResults(name, [f"{_WHOLE}: is {kind}, not a regular file"])
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
    return f"{_WHOLE}: is {size} bytes, larger than the limit of {max_bytes} bytes"


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
