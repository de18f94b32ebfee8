"""
A search space: the dimensions a command line, a space file or a config template declares.

On a command line, Orion's forms: ``--lr~'loguniform(1e-5, 1.0)'`` (``-x~...`` for one letter,
``--x~`` shortened to ``-x`` as Orion does) and the verbose ``--lr 'orion~loguniform(...)'``.
Each becomes ``--lr {lr}`` in the command the consumer renders. In a JSON or YAML config
template, a string ``'orion~prior(...)'`` at any depth is a dimension named by its path with
dots (``model.activation``) and becomes the placeholder ``"{model.activation}"``. A space file
(``--space space.yaml``) maps names to priors, ``orion~`` optional.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from .._errors import SpaceError
from .priors import Dimension, parse_prior

__all__ = ["Space", "rewrite_command", "rewrite_config"]

_MARK = "orion~"
_PRIOR_TEXT = re.compile(r"\s*[A-Za-z_]\w*\s*\(.*\)\s*", re.DOTALL)
_INLINE = re.compile(r"(-{1,2})([A-Za-z_][\w.-]*)~(.*)", re.DOTALL)
_OPTION = re.compile(r"-{1,2}([A-Za-z_][\w.-]*)")


def _is_prior(text: str) -> bool:
    """Whether the text after ``~`` is a prior (``--x~/path`` and ``--x~`` are not: Orion's rule)."""
    return _PRIOR_TEXT.fullmatch(text) is not None or text.lstrip()[:1] in ("+", ">")


@dataclass(frozen=True, slots=True)
class Space:
    """
    The dimensions of a search, in the order declared; names are unique.

    Attributes:
        dimensions: each parameter and its prior.
    """

    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for dim in self.dimensions:
            if dim.name in seen:
                msg = f"{dim.name}: declared twice in the search space"
                raise SpaceError(msg)
            seen.add(dim.name)

    @classmethod
    def of(cls, priors: Mapping[str, str]) -> Space:
        """
        The space of ``{name: "prior(...)"}`` (``orion~`` before a prior is allowed).

        Raises:
            SpaceError: a prior is unknown, not literal, or impossible.
        """
        return cls(tuple(parse_prior(name, _unmark(text)) for name, text in priors.items()))

    @classmethod
    def load(cls, path: str | Path) -> Space:
        """
        The space of a JSON or YAML file mapping names to priors.

        Raises:
            SpaceError: the file cannot be read, is not such a mapping, or a prior is bad.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
        except (OSError, ValueError) as exc:
            msg = f"space file {path}: {exc}"
            raise SpaceError(msg) from None
        if not isinstance(data, dict) or not data:
            msg = f"space file {path}: expected a mapping of names to priors, e.g. lr: loguniform(1e-5, 1)"
            raise SpaceError(msg)
        priors = dict(_flatten(data, ""))
        bad = [name for name, value in priors.items() if not isinstance(value, str)]
        if bad:
            msg = f"space file {path}: {bad[0]}: expected a prior such as 'uniform(0, 1)'"
            raise SpaceError(msg)
        return cls.of({name: str(value) for name, value in priors.items()})

    def __add__(self, other: Space) -> Space:
        return Space(self.dimensions + other.dimensions)

    def __bool__(self) -> bool:
        return bool(self.dimensions)

    @property
    def names(self) -> tuple[str, ...]:
        """The parameters' names, in order."""
        return tuple(dim.name for dim in self.dimensions)

    def spec(self) -> dict[str, str]:
        """What a store records: each name and its prior as written (``Space.of`` reads it)."""
        return {dim.name: dim.text for dim in self.dimensions}


def _unmark(text: str) -> str:
    return text.strip().removeprefix(_MARK)


def _yaml(text: str) -> JsonValue:
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the installation
        msg = "YAML space files need PyYAML: pip install 'async-consumer[yaml]'"
        raise ValueError(msg) from None
    data: JsonValue = yaml.safe_load(text)
    return data


def _flatten(data: Mapping[str, JsonValue], prefix: str) -> Iterator[tuple[str, JsonValue]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def rewrite_command(argv: Sequence[str]) -> tuple[list[str], Space]:
    """
    The command with each prior replaced by its placeholder, and the space the priors declare.

    ``["python", "t.py", "--lr~loguniform(1e-5, 1)"]`` gives
    ``["python", "t.py", "--lr", "{lr}"]`` and the dimension ``lr``.

    Raises:
        SpaceError: a prior is unknown, not literal, or impossible, or a name repeats.
    """
    command: list[str] = []
    priors: dict[str, str] = {}
    for item in argv:
        inline = _INLINE.fullmatch(item)
        if inline is not None and _is_prior(inline.group(3)):
            dashes, name, text = inline.groups()
            dashes = "-" if len(name) == 1 else dashes  # Orion shortens --x~ to -x
            _declare(priors, name, text)
            command += [f"{dashes}{name}", "{" + name + "}"]
            continue
        option = _OPTION.fullmatch(command[-1]) if command else None
        if item.strip().startswith(_MARK) and option is not None:
            name = option.group(1)
            _declare(priors, name, item)
            command.append("{" + name + "}")
            continue
        command.append(item)
    return command, Space.of(priors)


def _declare(priors: dict[str, str], name: str, text: str) -> None:
    if name in priors:
        msg = f"{name}: two priors have the same name on the command line"
        raise SpaceError(msg)
    priors[name] = text


def rewrite_config(data: JsonValue) -> tuple[JsonValue, Space]:
    """
    A config template's data with each ``'orion~prior(...)'`` string replaced by its
    placeholder (named by its path, with dots), and the space they declare.

    Raises:
        SpaceError: a prior is unknown, not literal, or impossible.
    """
    priors: dict[str, str] = {}
    rewritten = _rewrite_node(data, "", priors)
    return rewritten, Space.of(priors)


def _rewrite_node(node: JsonValue, path: str, priors: dict[str, str]) -> JsonValue:
    if isinstance(node, str) and node.strip().startswith(_MARK):
        name = path or "value"
        _declare(priors, name, node)
        return "{" + name + "}"
    if isinstance(node, list):
        return [
            _rewrite_node(v, f"{path}.{i}" if path else str(i), priors) for i, v in enumerate(node)
        ]
    if isinstance(node, dict):
        return {
            k: _rewrite_node(v, f"{path}.{k}" if path else str(k), priors) for k, v in node.items()
        }
    return node
