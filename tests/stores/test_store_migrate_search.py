"""A store of schema v5 (before searches) opens migrated: its experiments kept, searches recorded."""

from __future__ import annotations

import pytest

from async_consumer._experiment import Experiment
from async_consumer.stores import TrialStore

SEARCH = '{"n": 5, "sampler": "random", "space": {"x": "uniform(0, 1)"}}'


@pytest.mark.asyncio
async def test_a_v5_store_records_searches(v5_store: TrialStore) -> None:
    """
    A store made by the code before searches opens, migrated: its experiment kept, with no
    search; a new version records its search.
    """
    old = await v5_store.experiment("exp")
    assert old is not None and old.command == ("python", "t.py") and old.search is None
    assert await v5_store.add_experiment(
        Experiment(name="exp", version=2, command=("t",), search=SEARCH)
    )
    new = await v5_store.experiment("exp")
    assert new is not None and new.version == 2 and new.search == SEARCH
