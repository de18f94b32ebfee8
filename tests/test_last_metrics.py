"""Every metric line reaches ``on_metric``: the last ones too, in order, none twice."""

from __future__ import annotations

import pytest

from async_consumer import Metric, Outcome, Status, Trial

from .conftest import WRITE_RESULT, ConsumerFactory, RunScript, python

pytestmark = pytest.mark.asyncio

_WRITE = "open(os.environ['ASYNC_CONSUMER_METRICS_PATH'], 'a')"


async def _run_for_metrics(run_script: RunScript, code: str) -> tuple[Outcome, list[Metric]]:
    """Run the script ``code``: its outcome, and the metrics ``on_metric`` received, in order."""
    received: list[Metric] = []
    outcome = await run_script(code, on_metric=received.append)
    return outcome, received


async def test_a_burst_of_500_lines_at_exit_is_all_delivered(run_script: RunScript) -> None:
    """500 lines written just before exit: all delivered, in order, once each."""
    code = f"""
        import json, os
        with {_WRITE} as f:
            for step in range(500):
                f.write(json.dumps({{'step': step, 'loss': step / 500}}) + '\\n')
    """
    outcome, received = await _run_for_metrics(run_script, code + "\n        " + WRITE_RESULT)
    assert outcome.status is Status.COMPLETED
    assert [m.step for m in received] == list(range(500))


@pytest.mark.slow
async def test_the_last_line_before_exit_arrives(run_script: RunScript) -> None:
    """Steps 0 to 5, the last written just before exiting (without a newline): all six."""
    code = f"""
        import json, os, time
        for step in range(5):
            with {_WRITE} as f:
                f.write(json.dumps({{'step': step}}) + '\\n')
            time.sleep(0.1)
        with {_WRITE} as f:
            f.write(json.dumps({{'step': 5, 'val_loss': 0.25}}))
    """
    _, received = await _run_for_metrics(run_script, code + "\n        " + WRITE_RESULT)
    assert [m.step for m in received] == [0, 1, 2, 3, 4, 5]
    assert received[-1].values == {"val_loss": 0.25}


@pytest.mark.slow
async def test_the_last_lines_of_an_interrupted_script_arrive(run_script: RunScript) -> None:
    """A script that reports, then exits with the interrupt code: its lines still arrive."""
    code = f"""
        import os, sys
        with {_WRITE} as f:
            f.write('{{"step": 0}}\\n{{"step": 1}}\\n')
        sys.exit(130)
    """
    outcome, received = await _run_for_metrics(run_script, code)
    assert outcome.status is Status.INTERRUPTED
    assert [m.step for m in received] == [0, 1]


class Refused(Exception):
    """The orchestrator's own error."""


async def test_an_error_in_on_metric_reaches_the_caller_as_itself(
    make_consumer: ConsumerFactory,
) -> None:
    """Not an ExceptionGroup: the error raised by the callback, after the script is stopped."""
    code = f"""
        import os, time
        with {_WRITE} as f:
            f.write('{{"step": 0}}\\n')
        time.sleep(60)
    """

    def on_metric(metric: Metric) -> None:
        raise Refused(f"step {metric.step}")

    consumer = make_consumer(python(code), on_metric=on_metric, grace=0.5)
    with pytest.raises(Refused, match="step 0"):
        await consumer.run(Trial(id="t"))
    assert consumer.running == []


async def test_an_async_callback_is_refused_when_the_consumer_is_built(
    make_consumer: ConsumerFactory,
) -> None:
    """An ``async def`` on_metric would never be awaited: a TypeError at once."""

    async def on_metric(metric: Metric) -> None:
        pass

    class Callback:
        async def __call__(self, metric: Metric) -> None:
            pass

    for callback in (on_metric, Callback()):
        with pytest.raises(TypeError, match="plain function"):
            make_consumer(python("pass"), on_metric=callback)


@pytest.mark.slow
async def test_an_error_in_on_metric_reaches_a_batch_caller_as_itself(
    make_consumer: ConsumerFactory,
) -> None:
    """``map`` (a batch): the callback's error, not an ExceptionGroup; every script stopped."""
    code = f"""
        import os, sys, time
        if os.environ['ASYNC_CONSUMER_TRIAL_ID'] == 'bad':
            with {_WRITE} as f:
                f.write('{{"step": 0}}\\n')
        time.sleep(60)
    """

    def on_metric(metric: Metric) -> None:
        raise Refused(metric.trial_id)

    consumer = make_consumer(python(code), on_metric=on_metric, grace=0.5)
    with pytest.raises(Refused, match="bad"):
        await consumer.map([Trial(id="bad"), Trial(id="good")])
    assert consumer.running == []
