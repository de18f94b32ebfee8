"""Any valid trial id and JSON parameters come back from a store unchanged."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from async_consumer._models import Trial
from async_consumer.stores import MemoryStore, SQLiteStore, TrialStore

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON: st.SearchStrategy[JsonValue] = st.recursive(
    SCALARS.filter(lambda v: v not in (float("inf"), float("-inf"))),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
TRIALS = st.builds(
    Trial,
    id=TEXT.filter(bool),
    params=st.dictionaries(TEXT, JSON, max_size=4),
    experiment=TEXT,
)


async def _round_trip(store: TrialStore, trial: Trial) -> None:
    async with store:
        await store.add([trial])
        assert (await store.get(trial.id)).trial == trial
        lease = await store.reserve("w")
        assert lease is not None and lease.trial == trial
        assert await store.add([trial], exist_ok=True) == 0


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(trial=TRIALS)
def test_any_trial_round_trips(trial: Trial) -> None:
    """Ids and parameters of any text and JSON shape are stored and returned unchanged."""
    anyio.run(_round_trip, MemoryStore(), trial)
    anyio.run(_round_trip, SQLiteStore(":memory:"), trial)
