"""A worker checks each trial against its command as it reserves it, not the whole store first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from async_consumer._cli import work
from async_consumer._cli.main import main
from async_consumer.stores import TrialStore, open_store

from .conftest import WRITE_RESULT, python


class _Listing:
    """A store that counts the pages of trials read from it."""

    def __init__(self, store: TrialStore, lists: list[int]) -> None:
        self._store = store
        self._lists = lists

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def list(self, *args: Any, **kwargs: Any) -> Any:
        self._lists.append(1)
        return await self._store.list(*args, **kwargs)


@pytest.fixture
def lists(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item for each page of trials the commands' stores read."""
    read: list[int] = []

    async def open_listing(url: str) -> Any:
        return _Listing(await open_store(url), read)

    monkeypatch.setattr(work, "open_store", open_listing)
    return read


def _add(store: str, path: Path, rows: list[dict[str, int]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["add", "--store", store, "--params", str(path)]) == 0


def test_a_worker_reads_no_page_of_trials(
    tmp_path: Path, lists: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker runs a store's waiting trials without reading a page of the store's trials."""
    store = f"sqlite:///{tmp_path}/s.db"
    _add(store, tmp_path / "p.jsonl", [{"x": x} for x in range(3)])
    argv = ["worker", "--store", store, "--base-dir", str(tmp_path / "t")]
    assert main([*argv, "--", *python(WRITE_RESULT), "{x}"]) == 0
    assert "3 completed" in capsys.readouterr().out
    assert lists == []


def test_a_trial_the_command_cannot_run_ends_the_worker_when_reserved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A trial the worker's command cannot run, met after others, is given back unstarted, still
    waiting and with no attempt; the worker reserves nothing more and exits 2 naming it.
    """
    store = f"sqlite:///{tmp_path}/s.db"
    _add(store, tmp_path / "p.jsonl", [{"x": 1}, {"x": 2}, {"y": 3}, {"x": 4}])
    argv = ["worker", "--store", store, "-j", "1", "--base-dir", str(tmp_path / "t")]
    assert main([*argv, "--", *python(WRITE_RESULT), "{x}"]) == 2
    assert "unknown placeholder {x}" in capsys.readouterr().err
    assert main(["trials", "--store", store, "--json"]) == 0
    trials = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    seen = {(*t["params"].values(), t["status"], t["attempts"]) for t in trials}
    # the refused trial's reservation was undone: no attempt; the one after it never reserved
    assert seen == {(1, "completed", 1), (2, "completed", 1), (3, "new", 0), (4, "new", 0)}
