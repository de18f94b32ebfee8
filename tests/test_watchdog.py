"""A consumer killed with SIGKILL leaves nothing running: its watchdog stops the trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import is_alive, wait_until_sync

CONSUMER = """
    import sys, anyio
    from async_consumer import Consumer, Trial
    script = (
        "import os, subprocess, sys, time, signal\\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time, signal; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\\n"
        "open(sys.argv[1] + '/' + str(os.getpid()), 'w').close()\\n"
        "open(sys.argv[1] + '/' + str(c.pid), 'w').close()\\n"
        "time.sleep(120)\\n"
    )
    async def main() -> None:
        consumer = Consumer([sys.executable, '-c', script, sys.argv[1]], base_dir=sys.argv[2],
                            grace=0.5, watchdog=True, max_concurrency=2)
        await consumer.map([Trial(id='a'), Trial(id='b')])
    anyio.run(main)
"""


@pytest.mark.slow
def test_sigkilled_consumer_leaves_no_trial(tmp_path: Path) -> None:
    """SIGKILL to the consumer: its trials and their SIGTERM-ignoring children are killed."""
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    consumer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CONSUMER), str(pids_dir), str(tmp_path / "trials")]
    )
    wait_until_sync(lambda: len(os.listdir(pids_dir)) >= 4, "the scripts' pids", alive=consumer)
    pids = [int(p) for p in os.listdir(pids_dir)]
    assert len(pids) == 4
    assert all(is_alive(pid) for pid in pids)
    consumer.send_signal(signal.SIGKILL)
    consumer.wait()
    # the watchdog needs grace (0.5 s) and a SIGKILL; the bound must stay under the 120 s the
    # scripts and their children would live for on their own, or they would pass by ending
    wait_until_sync(
        lambda: not any(is_alive(pid) for pid in pids), "the trials to be killed", bound=60
    )


def test_a_group_forgotten_is_never_killed_even_if_not_yet_told() -> None:
    """Forgotten groups wait to be told with the next one; closing tells them first."""
    from async_consumer._supervise.watchdog import Watchdog

    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        watchdog = Watchdog(grace=0.5)
        watchdog.register(sleeper.pid)
        watchdog.forget(sleeper.pid)  # as if its trial ended: not yet written to the pipe
        watchdog.close()  # the watchdog exits, killing only what is still registered
        assert watchdog._process.returncode == 0
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_watchdog_exits_as_soon_as_the_consumer_closes_its_pipe() -> None:
    """Between two looks at its pipe, the watchdog still sees the consumer go at once."""
    import fcntl
    import termios

    import async_consumer._supervise.watchdog as module

    script = Path(module.__file__).with_name("watchdog_main.py")
    # one look at the pipe an hour: only the consumer's hang-up can end its wait in time
    watchdog = subprocess.Popen(
        [sys.executable, "-I", str(script), "0.5", "3600"], stdin=subprocess.PIPE
    )
    assert watchdog.stdin is not None
    try:
        watchdog.stdin.write(b"+999999999\n-999999999\n")
        watchdog.stdin.flush()
        unread = bytearray(4)

        def all_read() -> bool:
            assert watchdog.stdin is not None
            fcntl.ioctl(watchdog.stdin.fileno(), termios.FIONREAD, unread)
            return int.from_bytes(unread, sys.byteorder) == 0

        # once it has read the lines, it is waiting for its next look
        wait_until_sync(all_read, "the watchdog to read its input")
        watchdog.stdin.close()
        # the bound only ends the test if it fails: without the hang-up it would wait an hour
        assert watchdog.wait(timeout=60) == 0
    finally:
        watchdog.kill()  # nothing left behind if it failed
        watchdog.wait()


HOLDER = """
import socket, sys, time
from async_consumer._supervise.holder import holder_name
from async_consumer._supervise.watchdog import Watchdog
watchdog = Watchdog(0.5)
print(holder_name(socket.gethostname()), watchdog.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_dead_holder_is_not_gone_while_its_watchdog_runs() -> None:
    """
    A killed consumer's leases are not a gone holder's (reclaimed at once) until its watchdog,
    which ends the consumer's trials, has exited.
    """
    import socket

    from async_consumer._supervise.holder import is_gone

    host = socket.gethostname()
    consumer = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE)
    assert consumer.stdout is not None
    with consumer.stdout:
        holder, watchdog = consumer.stdout.readline().decode().split()
    assert not is_gone(holder, host)
    os.kill(int(watchdog), signal.SIGSTOP)  # it cannot see its consumer die, nor exit
    try:
        consumer.kill()
        consumer.wait()
        assert not is_gone(holder, host)  # its watchdog still runs
    finally:
        os.kill(int(watchdog), signal.SIGCONT)
    wait_until_sync(lambda: is_gone(holder, host), "the watchdog to exit")
