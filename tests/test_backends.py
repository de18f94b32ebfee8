"""The test suite's own promise: a test marked for both event loops really runs on each."""

from __future__ import annotations

import asyncio

import pytest
import trio


@pytest.mark.anyio
async def test_anyio_tests_run_on_the_loop_they_name(anyio_backend: str) -> None:
    """The trio run of an ``anyio`` test is inside trio, the asyncio run inside asyncio."""
    if anyio_backend == "trio":
        assert trio.lowlevel.current_trio_token() is not None  # RuntimeError outside trio
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
    else:
        assert anyio_backend == "asyncio"
        assert asyncio.current_task() is not None
        with pytest.raises(RuntimeError):
            trio.lowlevel.current_trio_token()


def test_every_anyio_test_is_parametrized_by_loop(request: pytest.FixtureRequest) -> None:
    """Every collected ``anyio`` test takes its loop from the fixture that gives asyncio and trio."""
    loops = set()
    for item in request.session.items:
        if item.get_closest_marker("anyio") is not None:
            callspec = getattr(item, "callspec", None)
            assert callspec is not None, f"{item.nodeid} is not parametrized by event loop"
            loops.add(callspec.params["anyio_backend"])
    assert loops == {"asyncio", "trio"}
