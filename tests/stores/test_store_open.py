"""Opening stores from URLs, the package's public names, and running on trio."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from async_consumer import stores
from async_consumer._models import Outcome, Status, TrialStatus
from async_consumer.stores import (
    MemoryStore,
    SQLiteStore,
    TrialStore,
    open_store,
    store_from_url,
)
from async_consumer.stores.sqlite import path_from_url

from .conftest import make_trials


def test_public_names_are_exported() -> None:
    """__all__ is sorted and names every public store, PostgresStore included."""
    assert stores.__all__ == sorted(stores.__all__)
    assert all(getattr(stores, name) is not None for name in stores.__all__)
    with pytest.raises(AttributeError, match="Nope"):
        _ = stores.Nope


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param("sqlite:///trials.db", "trials.db", id="relative"),
        pytest.param("sqlite:///dir/trials.db", "dir/trials.db", id="relative-dir"),
        pytest.param("sqlite:////abs/trials.db", "/abs/trials.db", id="absolute"),
    ],
)
def test_sqlite_url_paths(url: str, path: str) -> None:
    """sqlite:/// is followed by a relative path; a fourth slash makes it absolute."""
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "sqlite:x.db"])
def test_bad_sqlite_urls(url: str) -> None:
    """A SQLite URL with a host or without a path is a ValueError."""
    with pytest.raises(ValueError, match="sqlite:///"):
        path_from_url(url)


@pytest.mark.asyncio
async def test_open_memory_and_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """memory: and sqlite:/// URLs open the matching store, relative paths from the cwd."""
    monkeypatch.chdir(tmp_path)
    async with store_from_url("memory:", max_lost=5) as memory:
        assert isinstance(memory, MemoryStore)
    async with store_from_url("sqlite:///sub/t.db") as sqlite:
        assert isinstance(sqlite, SQLiteStore)
        await sqlite.add(make_trials(1))
    assert (tmp_path / "sub" / "t.db").is_file()
    store = await open_store(f"sqlite:///{tmp_path / 'sub' / 't.db'}")
    async with store:
        assert len(await store.list()) == 1


@pytest.mark.asyncio
async def test_unknown_scheme_is_named() -> None:
    """An unknown scheme is a ValueError that names it."""
    with pytest.raises(ValueError, match="'mysql'"):
        await open_store("mysql://root@localhost/db")


def test_negative_max_lost_is_refused(tmp_path: Path) -> None:
    """max_lost must be 0 or more."""
    with pytest.raises(ValueError, match="max_lost"):
        MemoryStore(max_lost=-1)
    with pytest.raises(ValueError, match="max_lost"):
        SQLiteStore(tmp_path / "s.db", max_lost=-1)


async def _drain(store: TrialStore) -> dict[TrialStatus, int]:
    async with store:
        await store.add(make_trials(5))
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(_work, store, f"w{i}")
        assert await store.reclaim_stale(0.0) == []
        return await store.counts()


async def _work(store: TrialStore, name: str) -> None:
    while (lease := await store.reserve(name)) is not None:
        await store.heartbeat(lease)
        await store.finish(lease, Outcome(trial_id=lease.trial_id, status=Status.COMPLETED))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_runs_on_trio(kind: str, tmp_path: Path) -> None:
    """The memory and SQLite stores work on anyio's trio backend too."""
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "s.db")
    counts = anyio.run(_drain, store, backend="trio")
    assert counts[TrialStatus.COMPLETED] == 5
