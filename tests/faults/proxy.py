"""A TCP proxy in front of the test's PostgreSQL server that a test can cut and restore."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


class Proxy:
    """Drives a proxy process (``proxy_main.py``): :meth:`cut` and :meth:`restore` it."""

    def __init__(self, host: str, port: int) -> None:
        script = str(Path(__file__).with_name("proxy_main.py"))
        self._process = subprocess.Popen(
            [sys.executable, script, host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def _tell(self, command: str) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        assert self._process.stdout.readline().strip() == "ok"

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._tell("cut")

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._tell("restore")

    def close(self) -> None:
        """End the proxy process: it leaves at the end of its input, else it is killed."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # never left behind, nor in place of a test's failure
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


@contextlib.contextmanager
def running_proxy(host: str, port: int) -> Iterator[Proxy]:
    """A running proxy, closed on exit."""
    proxy = Proxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
