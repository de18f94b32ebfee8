"""A store of schema v5 (before searches) opens migrated: its experiments kept, searches recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_consumer._experiment import Experiment
from async_consumer.stores import TrialStore

from ..conftest import NewSchema
from .old_stores import v5_store_with

SEARCH = '{"n": 5, "sampler": "random", "space": {"x": "uniform(0, 1)"}}'


async def _check_search_recorded(store: TrialStore) -> None:
    """The v5 experiment is there with no search; a new version records its search."""
    old = await store.experiment("exp")
    assert old is not None and old.command == ("python", "t.py") and old.search is None
    assert await store.add_experiment(
        Experiment(name="exp", version=2, command=("t",), search=SEARCH)
    )
    new = await store.experiment("exp")
    assert new is not None and new.version == 2 and new.search == SEARCH


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_v5_store_records_searches(
    kind: str, tmp_path: Path, new_schema: NewSchema
) -> None:
    """A store made by the code before searches opens, migrated, its experiment kept."""
    async with await v5_store_with("exp", kind, tmp_path, new_schema) as store:
        await _check_search_recorded(store)
