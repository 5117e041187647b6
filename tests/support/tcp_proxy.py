"""A TCP proxy a test can cut: one client's NATS connection goes down while NATS itself, and
every other service, carry on (a network fault between one edge and NATS)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.common.nats_server import free_port

CHUNK_BYTES = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port`` until cut, and again once restored."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The NATS URL a client uses to go through the proxy."""
        return f"nats://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        """Accept and forward connections (again)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Drop every forwarded connection and refuse new ones until ``restore``."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(CHUNK_BYTES):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


@contextlib.asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    """A running proxy to ``target_port`` for the duration of the block."""
    proxy = TcpProxy(target_port)
    await proxy.restore()
    try:
        yield proxy
    finally:
        await proxy.cut()
