"""Small input traps: each gives one clear line, and nothing is recorded or left reserved."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from async_consumer import Consumer, Trial
from async_consumer._cli.main import main
from async_consumer._errors import TrialFilesError
from async_consumer._models import TrialStatus
from async_consumer._worker.worker import Worker
from async_consumer.stores import MemoryStore, SQLiteStore

from .conftest import WRITE_RESULT, run_here


async def _statuses(path: Path) -> list[str]:
    async with SQLiteStore(path) as store:
        return [str(t.status) for t in await store.list()]


@pytest.mark.slow
def test_csv_with_a_byte_order_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spreadsheet's UTF-8 BOM is not part of the first column's name."""
    params = tmp_path / "p.csv"
    params.write_bytes(b"\xef\xbb\xbflr\r\n0.1\r\n")
    argv = ["--params", str(params), "--", sys.executable, "-c", WRITE_RESULT, "{lr}"]
    assert run_here(tmp_path, *argv) == 0
    assert "lr=0.1" in capsys.readouterr().out


def test_unterminated_quoted_csv_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A quoted field left open is an error naming the line, and nothing is recorded."""
    params = tmp_path / "p.csv"
    params.write_text('lr,name\n0.1,a\n0.2,"b\n0.3,c\n')
    assert run_here(tmp_path, "--params", str(params), "--", "true", "{lr}") == 2
    assert capsys.readouterr().err == (
        f"error: {params}:3: not valid CSV (unexpected end of data): is a quoted field left open?\n"
    )
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize(
    ("command", "message"),
    [([], "no command"), (["--", "true", "{nope}"], "unknown placeholder {nope}")],
)
def test_a_missing_or_bad_command_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    """Exit 2, one line, and no store (so no trials) is made."""
    params = tmp_path / "t.jsonl"
    params.write_text('{"x": 1}\n')
    assert run_here(tmp_path, "--params", str(params), *command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("command", ["status", "show", "logs", "report"])
def test_read_commands_on_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A store URL that names no store: exit 2, said in one line, and it is not created."""
    typo = tmp_path / "typo.db"
    argv = [command, "--store", f"sqlite:///{typo}"] + (
        ["abc"] if command in {"show", "logs"} else []
    )
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: no store at {typo}: nothing has run with it yet (check --store)\n"
    )
    assert not typo.exists()


@pytest.mark.slow
def test_unwritable_trial_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trial directories that cannot be made: one line, and no trial is left reserved."""
    (tmp_path / "a-file").touch()
    store = f"sqlite:///{tmp_path}/store.db"
    argv = [
        "run",
        "--store",
        store,
        "--base-dir",
        str(tmp_path / "a-file" / "trials"),
        "--grid",
        "x=1,2",
        "--",
        sys.executable,
        "-c",
        WRITE_RESULT,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot create trial directories in ") and err.count("\n") == 1
    assert anyio.run(_statuses, tmp_path / "store.db") == ["new", "new"]


@pytest.mark.asyncio
async def test_a_worker_hands_back_a_trial_it_could_not_run(tmp_path: Path) -> None:
    """The library's worker: a trial whose files cannot be made goes back to the queue."""
    (tmp_path / "a-file").touch()
    store = MemoryStore()
    await store.add([Trial(id="t")])
    consumer = Consumer(["true"], base_dir=tmp_path / "a-file", store=store)
    # a host fault, not the trial's: given back without a loss; the worker ends with one error
    with pytest.raises(TrialFilesError, match="Not a directory"):
        await Worker(store, consumer, max_file_faults=1).run()
    stored = await store.get("t")
    # never started: no attempt recorded, its number given back
    assert (stored.status, stored.lost_count, stored.attempts) == (TrialStatus.NEW, 0, ())


@pytest.mark.slow
def test_read_commands_default_to_the_run_store_and_take_id_prefixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """status/show/logs without --store read the store run used here; ids may be abbreviated."""
    monkeypatch.chdir(tmp_path)
    code = "import sys; print('hello', sys.argv[1])\n" + WRITE_RESULT
    assert main(["run", "--grid", "x=1,2", "--", sys.executable, "-c", code, "{x}"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "completed          2" in capsys.readouterr().out
    assert main(["show", "5041"]) == 0  # the id of {"x": 1} is 5041bf1f713d
    assert "trial 5041bf1f713d: completed" in capsys.readouterr().out
    assert main(["logs", "5041b"]) == 0
    assert capsys.readouterr().out == "hello 1\n"
    assert main(["show", "5"]) == 2  # both ids start with 5
    assert "2 trials have ids starting with '5'" in capsys.readouterr().err
    assert main(["show", "zz"]) == 2
    assert "no trial with an id starting with 'zz'" in capsys.readouterr().err
    assert main(["status", "--experiment", "other"]) == 2
    assert "--experiment (now 'other')" in capsys.readouterr().err


def test_an_id_prefix_is_found_a_page_at_a_time() -> None:
    """A prefix is matched over the whole store, read a page at a time; ambiguity is counted."""
    from async_consumer._cli.usage_checks import UsageError, find_trial

    async def main_() -> None:
        store = MemoryStore()
        await store.add(Trial(id=f"t{n:05d}x", params={"n": n}) for n in range(2500))
        assert (await find_trial(store, "t02499")).id == "t02499x"  # on the third page
        with pytest.raises(UsageError, match=r"10 trials have ids starting with 't0249' \("):
            await find_trial(store, "t0249")

    anyio.run(main_)
