"""Orion's priors, parsed as Orion parses them (its documentation's examples), never evaluated."""

from __future__ import annotations

import random

import pytest
from pydantic import JsonValue

from async_consumer._errors import SpaceError
from async_consumer._search.priors import Dimension, parse_prior
from async_consumer._search.samplers import RandomSampler
from async_consumer._search.space import Space, rewrite_command, rewrite_config

# (expression, prior, kind, low, high, extra checks), from Orion's searchspace.rst and its
# space builder's tests
GOOD = [
    ("uniform(-3, 5)", "uniform", "real", -3, 5, {}),
    ("uniform(0, 10, discrete=True)", "uniform", "integer", 0, 10, {}),
    ("uniform(0, 10, default_value=5)", "uniform", "real", 0, 10, {"default": 5}),
    ("uniform(0, 10, precision=3)", "uniform", "real", 0, 10, {"precision": 3}),
    ("uniform(low=0, high=1)", "uniform", "real", 0, 1, {}),
    ("uniform(-1e-3, 1e-3)", "uniform", "real", -1e-3, 1e-3, {}),
    ("loguniform(1e-5, 1.0)", "loguniform", "real", 1e-5, 1.0, {}),
    ("loguniform(0.001, 10)", "loguniform", "real", 0.001, 10, {}),
    ("loguniform(1e-5, 1e-2, precision=2)", "loguniform", "real", 1e-5, 1e-2, {"precision": 2}),
    ("loguniform(1, 1000, discrete=True)", "loguniform", "integer", 1, 1000, {}),
    ("normal(0.9, 0.1)", "normal", "real", 0.9, 0.1, {}),
    ("gaussian(0.9, 0.1)", "normal", "real", 0.9, 0.1, {}),
    ("normal(loc=0, scale=2)", "normal", "real", 0, 2, {}),
    ("normal(0, 1, discrete=True)", "normal", "integer", 0, 1, {}),
    ("randint(2, 10)", "randint", "integer", 2, 10, {}),
    ("randint(100, 1000)", "randint", "integer", 100, 1000, {}),
    (
        "choices(['all', 'equally', 'likely'])",
        "choices",
        "categorical",
        0,
        0,
        {"choices": ("all", "equally", "likely")},
    ),
    (
        "choices({'likely': 0.8, 'unlikely': 0.2, 'impossible': 0})",
        "choices",
        "categorical",
        0,
        0,
        {"choices": ("likely", "unlikely", "impossible"), "weights": (0.8, 0.2, 0.0)},
    ),
    ("choices([1.0, 2, 'three'])", "choices", "categorical", 0, 0, {"choices": (1.0, 2, "three")}),
    ("choices('a', 'b')", "choices", "categorical", 0, 0, {"choices": ("a", "b")}),
    (
        "choices(['sigmoid', 'relu'])",
        "choices",
        "categorical",
        0,
        0,
        {"choices": ("sigmoid", "relu")},
    ),
    ("choices([2, 4, 8], default_value=4)", "choices", "categorical", 0, 0, {"default": 4}),
    ("fidelity(1, 10)", "fidelity", "fidelity", 1, 10, {"base": 2.0}),
    ("fidelity(1, 10, base=3)", "fidelity", "fidelity", 1, 10, {"base": 3.0}),
    ("  uniform( 0 , 1 )  ", "uniform", "real", 0, 1, {}),
]


@pytest.mark.parametrize(
    ("text", "prior", "kind", "low", "high", "extra"), GOOD, ids=[case[0].strip() for case in GOOD]
)
def test_prior_is_parsed_as_orion_does(
    text: str, prior: str, kind: str, low: float, high: float, extra: dict[str, object]
) -> None:
    """Each prior of Orion's documentation gives its dimension, and its samples are in it."""
    dim = parse_prior("x", text)
    assert (dim.prior, dim.kind) == (prior, kind)
    if prior != "choices":
        assert (dim.low, dim.high) == (low, high)
    for name, value in extra.items():
        assert getattr(dim, name) == value
    rng = random.Random(0)
    for _ in range(200):
        assert dim.contains(dim.sample(rng)) or prior == "normal"


BAD = [
    ("loguniform(0, 1)", "lr: loguniform needs 0 < low < high, got low=0, high=1"),
    ("loguniform(1e-2, 1e-5)", "lr: loguniform needs 0 < low < high, got low=0.01, high=1e-05"),
    ("uniform(1, 0)", "lr: uniform needs low < high, got low=1, high=0"),
    ("uniform(1)", "lr: uniform needs 2 arguments (low, high), got 1"),
    ("normal(0, -1)", "lr: normal needs scale > 0, got scale=-1"),
    ("randint(1.5, 3)", "lr: randint needs whole numbers, got low=1.5, high=3"),
    ("fidelity(0, 10)", "lr: fidelity needs 0 < low <= high, got low=0, high=10"),
    ("fidelity(1, 10, base=0.5)", "lr: fidelity needs base >= 1, got base=0.5"),
    ("beta(1, 2)", "lr: unknown prior 'beta'"),
    ("uniform(0, 1, shape=2)", "lr: shape= (a vector of values) is not supported"),
    ("uniform(0, 1, foo=2)", "lr: uniform takes no argument 'foo'"),
    (
        "uniform(0, 1, precision=0)",
        "lr: precision must be a whole number of digits, 1 or more, got 0",
    ),
    ("uniform(0, 1, discrete='yes')", "lr: discrete must be True or False, got 'yes'"),
    (
        "uniform(0, 1, default_value=2)",
        "lr: default_value=2 is outside uniform(0, 1, default_value=2)",
    ),
    (
        "uniform(__import__('os').system('true'), 1)",
        "lr: only literal arguments are accepted, not \"__import__('os').system('true')\"",
    ),
    ("uniform(x, 1)", "lr: only literal arguments are accepted, not 'x'"),
    (
        "choices({'a': 0.5, 'b': 0.2})",
        "lr: choices' probabilities must be >= 0 and sum to 1, got 0.7",
    ),
    ("choices([])", "lr: choices needs at least one option"),
    (
        "choices([[1, 2], 3])",
        "lr: a choice must be a number, a string, a boolean or None, got [1, 2]",
    ),
    ("choices([1, 1])", "lr: choices lists an option twice"),
    ("-uniform(0, 1)", "lr: Orion's branching marker '-' is not supported"),
    ("uniform(0, 1", "lr: cannot read the prior 'uniform(0, 1'"),
    ("os.system('true')", "lr: expected a prior such as uniform(0, 1)"),
    ("uniform(0, float('inf'))", "lr: only literal arguments are accepted"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[case[0] for case in BAD])
def test_bad_prior_is_one_clear_line(text: str, message: str) -> None:
    """A bad prior is refused with one line naming the parameter and what is wrong."""
    with pytest.raises(SpaceError) as caught:
        parse_prior("lr", text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_precision_rounds_to_significant_digits() -> None:
    """``precision=2`` gives values such as 6.7e-4, not 6.789e-4 (Orion's documented example)."""
    dim = parse_prior("lr", "loguniform(1e-5, 1e-2, precision=2)")
    rng = random.Random(1)
    for _ in range(100):
        value = dim.sample(rng)
        assert isinstance(value, float)
        assert float(f"{value:.2g}") == value


def test_weighted_choices_follow_their_weights() -> None:
    """A category of weight 0 is never drawn; one of weight 0.8 about four times in five."""
    dim = parse_prior("c", "choices({'likely': 0.8, 'unlikely': 0.2, 'impossible': 0})")
    rng = random.Random(2)
    draws = [dim.sample(rng) for _ in range(2000)]
    assert "impossible" not in draws
    assert 0.75 < draws.count("likely") / len(draws) < 0.85


def test_fidelity_gives_its_high_value() -> None:
    """A fidelity is not sampled: every trial gets its full budget."""
    assert parse_prior("epochs", "fidelity(1, 100, base=4)").sample(random.Random()) == 100


@pytest.mark.parametrize(
    ("argv", "command", "priors"),
    [
        (
            ["python", "t.py", "--lr~loguniform(1e-5, 1.0)"],
            ["python", "t.py", "--lr", "{lr}"],
            {"lr": "loguniform(1e-5, 1.0)"},
        ),
        (["./t.py", "-x~uniform(0,1)"], ["./t.py", "-x", "{x}"], {"x": "uniform(0,1)"}),
        (["./t.py", "--x~uniform(0,1)"], ["./t.py", "-x", "{x}"], {"x": "uniform(0,1)"}),
        (
            ["t.py", "--lr", "orion~uniform(0, 1)", "--epochs", "10"],
            ["t.py", "--lr", "{lr}", "--epochs", "10"],
            {"lr": "uniform(0, 1)"},
        ),
        (["t.py", "--out~/tmp/x", "--arg~"], ["t.py", "--out~/tmp/x", "--arg~"], {}),
        (
            ["t.py", "--batch-size~choices([32, 64])"],
            ["t.py", "--batch-size", "{batch-size}"],
            {"batch-size": "choices([32, 64])"},
        ),
    ],
    ids=["long", "short", "one-letter-long", "verbose", "not-priors", "dashed-name"],
)
def test_command_priors_become_placeholders(
    argv: list[str], command: list[str], priors: dict[str, str]
) -> None:
    """Orion's command-line forms are found and replaced; other arguments stay as they are."""
    rewritten, space = rewrite_command(argv)
    assert rewritten == command
    assert {d.name: d.text for d in space.dimensions} == priors


def test_a_prior_twice_on_the_command_line_is_refused() -> None:
    """Two priors of one name: Orion's conflict, one line."""
    with pytest.raises(SpaceError, match="lr: two priors have the same name"):
        rewrite_command(["t.py", "--lr~uniform(0, 1)", "--lr~uniform(0, 2)"])


def test_config_template_priors_are_named_by_their_path() -> None:
    """``'orion~...'`` strings at any depth of a config become dotted placeholders."""
    data: JsonValue = {
        "lr": "orion~loguniform(1e-5, 1.0)",
        "model": {
            "activation": "orion~choices(['sigmoid', 'relu'])",
            "layers": ["orion~choices([1, 2, 3])", 64],
        },
        "fixed": 7,
    }
    rewritten, space = rewrite_config(data)
    assert rewritten == {
        "lr": "{lr}",
        "model": {"activation": "{model.activation}", "layers": ["{model.layers.0}", 64]},
        "fixed": 7,
    }
    assert space.names == ("lr", "model.activation", "model.layers.0")


def test_space_file_maps_names_to_priors(tmp_path: object) -> None:
    """A YAML space file: names (nested ones with dots) and priors, ``orion~`` optional."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "space.yaml"
    path.write_text("lr: loguniform(1e-5, 1)\nmodel:\n  width: orion~choices([64, 128])\n")
    assert Space.load(path).spec() == {
        "lr": "loguniform(1e-5, 1)",
        "model.width": "choices([64, 128])",
    }
    path.write_text("- lr\n")
    with pytest.raises(SpaceError, match="expected a mapping of names to priors"):
        Space.load(path)


def test_random_sampler_is_reproducible_with_a_seed() -> None:
    """With a seed, the k-th trial's parameters are the same every time; another seed differs."""
    space = Space.of(
        {"lr": "loguniform(1e-5, 1)", "layers": "choices([2, 4, 8])", "d": "uniform(0, 0.5)"}
    )
    first = [RandomSampler(space, seed=7).ask(k) for k in range(1, 21)]
    again = [RandomSampler(space, seed=7).ask(k) for k in range(1, 21)]
    other = [RandomSampler(space, seed=8).ask(k) for k in range(1, 21)]
    assert first == again
    assert first != other
    assert len({p["lr"] for p in first}) == 20


def test_dimension_is_a_value() -> None:
    """Two parses of one prior are equal (a space recorded and read again is the same)."""
    assert parse_prior("x", "uniform(0, 1)") == Dimension("x", "uniform", "uniform(0, 1)", 0.0, 1.0)
