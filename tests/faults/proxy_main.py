"""
A TCP proxy, run as its own process: ``python proxy_main.py HOST PORT``.

Prints the port it listens on, then obeys lines on stdin: ``cut`` (drop every connection and
stop listening: new connections are refused) and ``restore`` (listen again on the same port);
each is acknowledged with ``ok``. Ends at end of input.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers.add(up_writer)
        if self.server is None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


async def main() -> None:
    proxy = Proxy(sys.argv[1], int(sys.argv[2]))
    await proxy.listen()
    sys.stdout.write(f"{proxy.port}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "cut":
            proxy.cut()
        elif line.strip() == "restore":
            await proxy.listen()
        sys.stdout.write("ok\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
