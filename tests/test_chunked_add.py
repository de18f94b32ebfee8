"""Parameter files are read and added a chunk at a time, and checked whole before anything is added."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from async_consumer._cli import trialsource
from async_consumer._cli.idset import IdSet
from async_consumer._cli.main import main
from async_consumer._models import TrialStatus
from async_consumer.stores import SQLiteStore

LINES = 2500  # three chunks of CHUNK (1,000)


def _params(path: Path, bad: dict[int, str] | None = None) -> Path:
    """``LINES`` distinct parameter sets, line ``n`` replaced by ``bad[n]`` where given."""
    lines = [json.dumps({"x": n, "name": f"t{n}"}) for n in range(1, LINES + 1)]
    for number, text in (bad or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


async def _stored(path: Path) -> list[str]:
    async with SQLiteStore(path) as store:
        return [json.dumps(t.trial.params) for t in await store.list()]


def test_a_chunked_add_records_every_trial_in_order(tmp_path: Path) -> None:
    """``add`` of a file larger than a chunk records every line, in the file's order."""
    params = _params(tmp_path / "p.jsonl")
    store = f"sqlite:///{tmp_path}/store.db"
    assert trialsource.CHUNK < LINES
    assert main(["add", "--store", store, "--params", str(params)]) == 0
    stored = anyio.run(_stored, tmp_path / "store.db")
    assert stored == params.read_text().splitlines()
    assert main(["add", "--store", store, "--params", str(params)]) == 0  # all already there
    assert len(anyio.run(_stored, tmp_path / "store.db")) == LINES


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({1500: "{not json"}, ":1500: not JSON"),
        ({2400: json.dumps({"x": 10, "name": "t10"})}, "trial 2400 repeats the parameters"),
    ],
    ids=["malformed-line", "repeated-line"],
)
def test_a_bad_line_after_the_first_chunk_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict[int, str], message: str
) -> None:
    """A bad line past the first chunk is named, and no trial of the file is recorded."""
    params = _params(tmp_path / "p.jsonl", bad)
    store = tmp_path / "store.db"
    for command in ("add", "run"):
        argv = [command, "--store", f"sqlite:///{store}", "--params", str(params)]
        assert main([*argv, *(["--", "true"] if command == "run" else [])]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert not store.exists()


def test_a_run_counts_its_own_trials_among_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run's summary counts and ranks its parameter set's trials, not the store's others."""
    store = f"sqlite:///{tmp_path}/store.db"
    assert main(["add", "--store", store, "--grid", "x=0.5,0.25,7"]) == 0  # run too, not counted
    argv = ["run", "--store", store, "--base-dir", str(tmp_path / "t"), "--grid", "x=1,2"]
    assert main([*argv, "--json", "--", "sh", "-c", 'echo {x} > "$ORION_RESULTS_PATH"']) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert summary["counts"] == {"completed": 2}
    assert summary["ran"] == 5
    assert summary["best"]["params"] == {"x": 1}


def test_an_id_set_holds_hashes_and_finds_repeats() -> None:
    """Membership by id, and the hashes of ids added twice."""
    ids = IdSet()
    ids.extend(["b", "a"])
    ids.extend(["c", "a"])
    assert ids.seal() == {hash("a")}
    assert "a" in ids and "c" in ids and "d" not in ids
    assert len(ids) == 4


def test_status_counts_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` counts every trial and lists none that is not running."""
    store = f"sqlite:///{tmp_path}/store.db"
    assert main(["add", "--store", store, "--params", str(_params(tmp_path / "p.jsonl"))]) == 0
    capsys.readouterr()
    assert main(["status", "--store", store, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"] == {str(TrialStatus.NEW): LINES}
    assert shown["running"] == []
