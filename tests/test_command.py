"""Rendering command lines and config files from trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from async_consumer import CommandTemplate, ConfigTemplate, TemplateError
from async_consumer._trial.paths import TrialPaths


def _paths(tmp_path: Path, config: bool = False) -> TrialPaths:
    wd = tmp_path / "wd"
    return TrialPaths(
        working_dir=wd,
        results=wd / "results.json",
        params=wd / "params.json",
        metrics=wd / "metrics.jsonl",
        stdout=wd / "stdout.log",
        stderr=wd / "stderr.log",
        config=wd / "config.yaml" if config else None,
    )


def test_placeholders_render_parameters_and_builtins(tmp_path: Path) -> None:
    """Parameters, dotted nested ones and the built-in names all render into their argv items."""
    template = CommandTemplate(
        [
            "train",
            "--lr",
            "{lr}",
            "--layers={model.layers}",
            "{trial.id}-{experiment.name}",
            "{results_path}",
            "{params_path}",
            "{trial.working_dir}",
            "{exp.name}",
        ]
    )
    paths = _paths(tmp_path)
    argv = template.render(
        {"lr": 0.01, "model": {"layers": 3}}, trial_id="t1", experiment="exp", paths=paths
    )
    assert argv == [
        "train",
        "--lr",
        "0.01",
        "--layers=3",
        "t1-exp",
        str(paths.results),
        str(paths.params),
        str(paths.working_dir),
        "exp",
    ]


def test_flat_key_with_dots_wins_over_nesting(tmp_path: Path) -> None:
    """A parameter whose own name holds dots is found by exact match, as in Orion."""
    argv = CommandTemplate(["{a.b}"]).render(
        {"a.b": "flat", "a": {"b": "nested"}}, trial_id="t", paths=_paths(tmp_path)
    )
    assert argv == ["flat"]


@pytest.mark.parametrize(
    "value",
    ["with space", "quo'te\"s", "$(touch pwned)", "a;b", "line\nbreak", "ünïcødé ☃", ""],
    ids=["space", "quotes", "subshell", "semicolon", "newline", "unicode", "empty"],
)
def test_a_value_is_exactly_one_argv_item(tmp_path: Path, value: str) -> None:
    """A value never splits or merges argv items, whatever it holds."""
    argv = CommandTemplate(["prog", "{v}", "--x={v}"]).render(
        {"v": value}, trial_id="t", paths=_paths(tmp_path)
    )
    assert argv == ["prog", value, f"--x={value}"]


def test_unknown_placeholder_is_named(tmp_path: Path) -> None:
    """An unknown placeholder is a ValueError that names it."""
    with pytest.raises(ValueError, match=r"\{learning_rate\}"):
        CommandTemplate(["{learning_rate}"]).render({"lr": 1}, trial_id="t", paths=_paths(tmp_path))


def test_config_file_placeholder_needs_a_config(tmp_path: Path) -> None:
    """``{config_file}`` without a config template is an unknown placeholder."""
    with pytest.raises(TemplateError, match="config_file"):
        CommandTemplate(["{config_file}"]).render({}, trial_id="t", paths=_paths(tmp_path))


def test_literal_braces_are_kept(tmp_path: Path) -> None:
    """JSON in an argument and doubled braces are literal text, not placeholders (Orion breaks here)."""
    argv = CommandTemplate(['{"a": 1}', "{{x}}", "{}"]).render(
        {}, trial_id="t", paths=_paths(tmp_path)
    )
    assert argv == ['{"a": 1}', "{x}", "{}"]


def test_values_render_like_orion(tmp_path: Path) -> None:
    """Numbers and booleans render with str(), lists and objects as compact JSON."""
    argv = CommandTemplate(["{i}", "{f}", "{b}", "{l}", "{d}"]).render(
        {"i": 3, "f": 1e-5, "b": True, "l": [1, 2], "d": {"k": "v"}},
        trial_id="t",
        paths=_paths(tmp_path),
    )
    assert argv == ["3", "1e-05", "True", "[1,2]", '{"k":"v"}']


def test_command_must_not_be_a_string() -> None:
    """A command given as one string is refused: no shell will split it."""
    with pytest.raises(TypeError, match="no shell"):
        CommandTemplate("python train.py")


def test_yaml_config_keeps_types(tmp_path: Path) -> None:
    """In a YAML config, a string that is exactly a placeholder becomes the typed value."""
    source = tmp_path / "cfg.yaml"
    source.write_text(
        "model:\n  lr: '{lr}'\n  layers: ['{n}', 64]\nname: 'run-{trial.id}'\nfixed: 7\n"
    )
    text = ConfigTemplate.load(source).render(
        {"lr": 0.5, "n": 2}, trial_id="t9", paths=_paths(tmp_path, config=True)
    )
    import yaml

    assert yaml.safe_load(text) == {
        "model": {"lr": 0.5, "layers": [2, 64]},
        "name": "run-t9",
        "fixed": 7,
    }


def test_json_config_keeps_types(tmp_path: Path) -> None:
    """In a JSON config, typed values stay typed and other content is kept."""
    source = tmp_path / "cfg.json"
    source.write_text(json.dumps({"opt": {"lr": "{lr}", "wd": 0.1}, "tags": ["{tag}"]}))
    text = ConfigTemplate.load(source).render(
        {"lr": 0.25, "tag": "a b"}, trial_id="t", paths=_paths(tmp_path, config=True)
    )
    assert json.loads(text) == {"opt": {"lr": 0.25, "wd": 0.1}, "tags": ["a b"]}


def test_config_unknown_placeholder(tmp_path: Path) -> None:
    """An unknown placeholder in a config template is named too."""
    source = tmp_path / "cfg.json"
    source.write_text('{"a": "{missing}"}')
    with pytest.raises(TemplateError, match="missing"):
        ConfigTemplate.load(source).render({}, trial_id="t", paths=_paths(tmp_path, config=True))


def test_config_bad_extension(tmp_path: Path) -> None:
    """Only JSON and YAML config templates are accepted."""
    source = tmp_path / "cfg.ini"
    source.write_text("[x]\n")
    with pytest.raises(TemplateError, match="extension"):
        ConfigTemplate.load(source)


def test_trial_paths_keep_text_and_give_paths(tmp_path: Path) -> None:
    """Attributes are paths, ``text`` the same as text; equal by value, read-only, and shown."""
    paths = _paths(tmp_path, config=True)
    assert paths.results == tmp_path / "wd" / "results.json"
    assert paths.text.results == str(tmp_path / "wd" / "results.json")
    assert paths.config == tmp_path / "wd" / "config.yaml"
    assert _paths(tmp_path, config=False).config is None
    assert paths == _paths(tmp_path, config=True)
    assert hash(paths) == hash(_paths(tmp_path, config=True))
    assert paths != _paths(tmp_path, config=False)
    assert "results.json" in repr(paths)
    with pytest.raises(AttributeError, match="read-only"):
        paths.results = tmp_path  # type: ignore[misc]
