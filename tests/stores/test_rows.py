"""How stores turn rows back into trials."""

from __future__ import annotations

from async_consumer import Trial
from async_consumer.stores._rows import dump_trial, load_trial


def test_a_loaded_trial_is_the_stored_one_numbered_with_its_attempt() -> None:
    """A trial read back equals the one stored, numbered, with every field counted as set."""
    trial = Trial(id="t", params={"x": [1, 2]}, experiment="e", slots={"gpu": 1}, timeout=3.0)
    loaded = load_trial(dump_trial(trial), 4)
    assert loaded == trial.model_copy(update={"attempt": 4})
    assert loaded.model_fields_set == set(Trial.model_fields)
    assert load_trial(dump_trial(trial), 0).attempt == 1


def test_loaded_trials_keep_their_own_fields_set() -> None:
    """Trials loaded alike share their field names, yet a copy of one changes neither."""
    first = load_trial(dump_trial(Trial(id="a")), 1)
    second = load_trial(dump_trial(Trial(id="b")), 2)
    copy = first.model_copy(update={"attempt": 3})
    assert copy.attempt == 3
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.model_fields_set == second.model_fields_set == set(Trial.model_fields)
