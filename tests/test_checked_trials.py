"""A parameter file is read once: checked whole, kept, then added; trials made by a shortcut equal validated ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pydantic
import pytest

from async_consumer._cli.main import main
from async_consumer._cli.trial_params import TrialMaker, _loads, trial_id
from async_consumer._cli.trialsource import TrialSource
from async_consumer._models import Trial
from async_consumer.stores import SQLiteStore
from async_consumer.stores._rows import dump_trial


async def _stored_params(path: Path) -> list[dict[str, object]]:
    async with SQLiteStore(path) as store:
        return [dict(t.trial.params) for t in await store.list()]


def test_a_bad_line_deep_in_a_large_file_records_nothing_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Line 50,001 of 60,000 malformed: ``add`` names it and the store is never made."""
    lines = [json.dumps({"x": n / 7, "y": n}) for n in range(60_000)]
    lines[50_000] = '{"x": 1.5, "y": }'
    params = tmp_path / "p.jsonl"
    params.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store.db"
    assert main(["add", "--store", f"sqlite:///{store}", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{params}:50001: not JSON" in err
    assert not store.exists()


def test_what_is_added_is_what_was_checked(tmp_path: Path) -> None:
    """The trials are added from what the check kept: a file changed since is not read again."""
    params = tmp_path / "p.jsonl"
    params.write_text('{"x": 1}\n{"x": 2}\n')
    source = TrialSource(str(params), (), "default", {})
    with source.check() as checked:
        params.write_text("{not json\n")
        [chunk] = list(checked.chunks(1))
        assert [t.params for t in chunk] == [{"x": 1}, {"x": 2}]
        [again] = list(checked.chunks(2))  # another version: other ids, same trials
        assert [t.id for t in again] == [trial_id(t.params, 2) for t in chunk]


@pytest.mark.parametrize(
    ("tid", "params"),
    [
        ("abc", {"x": 1.5, "y": 3, "s": "t", "b": True, "n": None}),
        ("abc", {"nan": float("nan"), "big": 10**30, "odd": "\ud800"}),
        ("abc", {}),
    ],
    ids=["scalars", "edge-scalars", "empty"],
)
def test_a_trial_made_as_a_copy_equals_a_validated_one(
    tid: str, params: dict[str, pydantic.JsonValue]
) -> None:
    """The shortcut gives the trial ``Trial(...)`` would: same fields, fields set, dump."""
    maker = TrialMaker("exp", {"gpu": 1})
    maker.make("first", {"x": 0})
    made = maker.make(tid, dict(params))
    validated = Trial(id=tid, params=dict(params), experiment="exp", slots={"gpu": 1})
    assert repr(made) == repr(validated)
    assert made.model_fields_set == validated.model_fields_set
    assert made.slots is not validated.slots and made.slots == {"gpu": 1}
    if "odd" not in params:  # a lone surrogate cannot be written out, either way
        assert dump_trial(made) == dump_trial(validated)
        assert made == validated


@pytest.mark.parametrize(
    ("tid", "params"),
    [
        ("", {"x": 1}),
        ("a\x00b", {"x": 1}),
        ("abc", {"x": json.loads("[" * 300 + "]" * 300)}),
    ],
    ids=["empty-id", "nul-in-id", "nested-too-deep"],
)
def test_what_pydantic_refuses_is_refused_with_its_message(
    tid: str, params: dict[str, pydantic.JsonValue]
) -> None:
    """A trial the shortcut cannot vouch for is validated in full, by check and make alike."""
    with pytest.raises(pydantic.ValidationError) as expected:
        Trial(id=tid, params=params)
    maker = TrialMaker("default", {})
    maker.check("first", {"x": 0})
    for attempt in (maker.check, maker.make):
        with pytest.raises(pydantic.ValidationError) as got:
            attempt(tid, params)
        assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "line",
    ['{"a": 1}\n', ' {"a": 1}\n', '{"a": 1} x\n', '{"a": 1}  \n', "{not\n", "\ufeff{}\n", "NaN\n"],
)
def test_lines_are_parsed_as_json_loads_parses_them(line: str) -> None:
    """The same value, or the same error, as ``json.loads``."""
    try:
        expected: object = json.loads(line)
    except ValueError as exc:
        with pytest.raises(
            ValueError, match="^" + str(exc).replace("(", r"\(").replace(")", r"\)")
        ):
            _loads(line)
    else:
        assert repr(_loads(line)) == repr(expected)


def test_a_versioned_add_gives_the_ids_of_its_version(tmp_path: Path) -> None:
    """Trials kept by the check get the store's experiment version's ids when added."""
    params = tmp_path / "p.jsonl"
    params.write_text('{"x": 1}\n{"id": "mine", "x": 2}\n')
    store = tmp_path / "store.db"
    assert main(["add", "--store", f"sqlite:///{store}", "--params", str(params)]) == 0
    assert anyio.run(_stored_params, store) == [{"x": 1}, {"x": 2}]
    source = TrialSource(str(params), (), "default", {})
    with source.check() as checked:
        [chunk] = list(checked.chunks(3))
    assert [t.id for t in chunk] == [trial_id({"x": 1}, 3), "mine-v3"]


_ID_CASES = {
    "scalars": {"x": 1e-05, "lr": 0.1, "layers": 3, "name": "t1", "on": True, "none": None},
    "nested": {"b": [1, 2.5, {"z": None, "y": "deep"}], "a": {"k": {"j": []}}},
    "text": {"é": 'ünïcode \u2028 \x00 "quoted"', "big": 10**40, "neg": -0.0},
    "nan": {"x": float("nan"), "y": float("inf")},
    "empty": {},
}


@pytest.mark.parametrize("params", _ID_CASES.values(), ids=_ID_CASES.keys())
def test_trial_ids_are_the_hash_of_the_sorted_compact_json(params: dict[str, object]) -> None:
    """An id is the start of the SHA-256 of the parameters' sorted, compact, UTF-8 JSON, as ever."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert trial_id(params) == hashlib.sha256(canonical.encode()).hexdigest()[:12]  # type: ignore[arg-type]
    again = hashlib.sha256(f"{canonical}\x00version 2".encode()).hexdigest()[:12]
    assert trial_id(params, 2) == again  # type: ignore[arg-type]
