"""
Render a trial's command line and config file from templates: never a shell, never a split.

A placeholder is ``{name}`` where ``name`` is a parameter (dotted for nested ones, or a flat key
that itself holds dots) or one of the built-in names in :data:`BUILTIN_NAMES`. Braces that do not
form such a name (``{"a": 1}``) are literal text, and ``{{`` / ``}}`` stand for ``{`` / ``}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import JsonValue

from .._errors import TemplateError
from .files import json_file
from .paths import TrialPaths

__all__ = ["BUILTIN_NAMES", "CommandTemplate", "ConfigTemplate", "lookup"]

BUILTIN_NAMES: Final = (
    "config_file",
    "experiment.name",
    "metrics_path",
    "params_path",
    "results_path",
    "trial.attempt",
    "trial.id",
    "trial.working_dir",
)
_ALIASES: Final = {"exp.name": "experiment.name"}
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.:/-]*)\}")
_MISSING = object()


def lookup(params: Mapping[str, JsonValue], name: str) -> object:
    """
    Find a parameter by name: an exact key first, then a dotted path into nested objects.

    Returns the module's ``_MISSING`` sentinel (never a parameter value) when nothing matches.
    """
    if name in params:
        return params[name]
    node: object = params
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)  # numbers and booleans as Orion gives them: str(value)


def _names(template: str) -> Iterator[str]:
    for match in _TOKEN.finditer(template):
        if match.group(1) is not None:
            yield match.group(1)


class _Values:
    """The values placeholders resolve to for one trial."""

    def __init__(self, params: Mapping[str, JsonValue], builtins: Mapping[str, str]) -> None:
        self.params = params
        self.builtins = builtins

    def resolve(self, name: str) -> object:
        name = _ALIASES.get(name, name)
        if name in self.builtins:
            return self.builtins[name]
        return lookup(self.params, name)

    def check(self, templates: Sequence[str]) -> None:
        unknown = sorted({n for t in templates for n in _names(t) if self.resolve(n) is _MISSING})
        if unknown:
            known = ", ".join(sorted({*self.params, *self.builtins}))
            msg = (
                f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)} (known: {known})"
            )
            raise TemplateError(msg)

    def substitute(self, template: str) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if match.group(1) is None:
                return token[0]  # "{{" -> "{", "}}" -> "}"
            return _as_text(self.resolve(match.group(1)))

        return _TOKEN.sub(replace, template)


def _builtins(trial_id: str, attempt: int, experiment: str, files: TrialPaths) -> dict[str, str]:
    paths = files.text
    values = {
        "trial.id": trial_id,
        "trial.attempt": str(attempt),
        "trial.working_dir": paths.working_dir,
        "experiment.name": experiment,
        "results_path": paths.results,
        "params_path": paths.params,
        "metrics_path": paths.metrics,
    }
    if paths.config is not None:
        values["config_file"] = paths.config
    return values


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    """
    The user's command line with placeholders, e.g. ``["python", "train.py", "--lr", "{lr}"]``.

    Each item renders to exactly one argv item: a value holding spaces, quotes or ``$(...)``
    stays inside its item, and nothing is ever given to a shell.
    """

    argv: tuple[str, ...]

    def __init__(self, argv: Sequence[str]) -> None:
        if isinstance(argv, str):
            msg = "command must be a sequence of arguments, not one string (no shell is used)"
            raise TypeError(msg)
        if not argv:
            msg = "command must not be empty"
            raise ValueError(msg)
        object.__setattr__(self, "argv", tuple(argv))

    @property
    def placeholders(self) -> set[str]:
        """Every name the command refers to."""
        return {name for item in self.argv for name in _names(item)}

    def render(
        self,
        params: Mapping[str, JsonValue],
        *,
        trial_id: str,
        attempt: int = 1,
        experiment: str = "default",
        paths: TrialPaths,
    ) -> list[str]:
        """
        Return the argv for one trial.

        Raises:
            TemplateError: a placeholder names neither a parameter nor a built-in value.
        """
        values = _Values(params, _builtins(trial_id, attempt, experiment, paths))
        values.check(self.argv)
        return [values.substitute(item) for item in self.argv]


@dataclass(frozen=True, slots=True)
class ConfigTemplate:
    """
    A JSON or YAML file whose strings may hold placeholders (Orion's ``--config`` feature).

    A string that is exactly ``"{name}"`` becomes the typed value (a number stays a number);
    placeholders inside longer strings are substituted as text.
    """

    path: Path
    data: JsonValue
    is_yaml: bool

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConfigTemplate:
        """
        Read a template from a ``.json``, ``.yaml`` or ``.yml`` file.

        Raises:
            TemplateError: the file cannot be read or parsed, or has another extension.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in {".json", ".yaml", ".yml"}:
            msg = f"config template {path}: extension must be .json, .yaml or .yml"
            raise TemplateError(msg)
        try:
            text = path.read_text(encoding="utf-8")
            data = _load_yaml(text) if suffix != ".json" else json.loads(text)
        except (OSError, ValueError) as exc:
            msg = f"config template {path}: {exc}"
            raise TemplateError(msg) from exc
        return cls(path=path, data=data, is_yaml=suffix != ".json")

    @classmethod
    def of(cls, template: str | os.PathLike[str] | ConfigTemplate) -> ConfigTemplate:
        """``template`` itself, or the template read from that file (see :meth:`load`)."""
        return template if isinstance(template, ConfigTemplate) else cls.load(template)

    @property
    def suffix(self) -> str:
        """The extension of the rendered file."""
        return self.path.suffix.lower()

    def render(
        self,
        params: Mapping[str, JsonValue],
        *,
        trial_id: str,
        attempt: int = 1,
        experiment: str = "default",
        paths: TrialPaths,
    ) -> str:
        """Return the text of the config file for one trial."""
        values = _Values(params, _builtins(trial_id, attempt, experiment, paths))
        values.check(list(_strings(self.data)))
        rendered = _fill(self.data, values)
        if self.is_yaml:
            return _dump_yaml(rendered)
        return json_file(rendered, trial_id, "config file").decode() + "\n"


def _strings(node: JsonValue) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for key, item in node.items():
            yield key
            yield from _strings(item)


def _fill(node: JsonValue, values: _Values) -> JsonValue:
    if isinstance(node, str):
        match = _TOKEN.fullmatch(node)
        if match is not None and match.group(1) is not None:
            return values.resolve(match.group(1))  # type: ignore[return-value]
        return values.substitute(node)
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {values.substitute(k): _fill(v, values) for k, v in node.items()}
    return node


def _load_yaml(text: str) -> JsonValue:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the installation
        msg = "YAML config templates need PyYAML: pip install 'async-consumer[yaml]'"
        raise TemplateError(msg) from exc
    data: JsonValue = yaml.safe_load(text)
    return data


def _dump_yaml(data: JsonValue) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
