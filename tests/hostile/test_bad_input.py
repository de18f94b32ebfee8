"""Bad input to a batch: a trial that cannot be rendered is a clean error, and nothing leaks."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from async_consumer import Consumer, TemplateError, Trial

from ..conftest import WRITE_RESULT, ConsumerFactory, python


async def _batch(consumer: Consumer, trials: list[Trial]) -> None:
    async with consumer.run_batch(trials) as outcomes:
        async for _ in outcomes:
            pass


async def _map(consumer: Consumer, trials: list[Trial]) -> None:
    await consumer.map(trials)


@pytest.mark.parametrize("entry", [_batch, _map], ids=["run_batch", "map"])
@pytest.mark.asyncio
async def test_unrenderable_trial_raises_template_error_and_leaks_nothing(
    make_consumer: ConsumerFactory, entry: Callable[[Consumer, list[Trial]], Awaitable[None]]
) -> None:
    """A trial naming an unknown placeholder raises TemplateError itself, closing the batch."""
    consumer = make_consumer([*python(WRITE_RESULT), "{missing}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # keep only the kind of the error: its traceback holds the batch
        try:
            await entry(consumer, [Trial(id="t")])
        except (TemplateError, BaseExceptionGroup) as exc:
            raised: type[BaseException] | None = type(exc)
        else:
            raised = None
        gc.collect()  # so that an unclosed stream warns here, not in a later test
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert raised is TemplateError
    assert leaks == []


@pytest.mark.asyncio
async def test_params_that_cannot_be_written_are_refused_before_anything_starts(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """A parameter string with a lone surrogate cannot go to params.json: an error naming it."""
    consumer = make_consumer(python(WRITE_RESULT))
    good, bad = Trial(id="good"), Trial(id="bad", params={"name": "caf\udce9"})
    with pytest.raises(TemplateError, match="trial 'bad': its params cannot be written as JSON"):
        consumer.check(bad)
    with pytest.raises(TemplateError):
        await consumer.map([good, bad])
    assert not (tmp_path / "trials" / "default" / "good").exists()  # checked before any start


def test_config_that_cannot_be_written_is_refused(
    make_consumer: ConsumerFactory, tmp_path: Path
) -> None:
    """The same for a JSON config template: an error naming the trial and its config file."""
    template = tmp_path / "config.json"
    template.write_text('{"name": "{name}"}')
    consumer = make_consumer(python(WRITE_RESULT), config_template=template)
    bad = Trial(id="bad", params={"name": "caf\udce9"})
    with pytest.raises(TemplateError, match="trial 'bad': its config file cannot be written"):
        consumer.check(bad)
