"""A TCP proxy on 127.0.0.1 that a test controls: the network fault nothing closes.

Killing a server makes the client see a close or a refusal at once. A stalled network (a
NAT table that forgot the flow, a cable pulled between two routers) closes nothing: bytes
just stop arriving, and only a liveness check (heartbeats) can tell. This proxy makes that
fault on demand::

    async with StallingProxy("127.0.0.1", bridge.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        ...
        proxy.stall()     # stop forwarding both ways; every socket stays open
        proxy.resume()    # forward again (what was held back is delivered)
        proxy.drop()      # close every connection (new ones are still accepted)

Bounded: each direction of each connection holds at most ``CHUNK`` bytes in flight (reading
waits while stalled), and closing the proxy closes every connection it made.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


class _Pipe:
    """One proxied connection: client <-> upstream, two pumps that wait while stalled."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 flowing: asyncio.Event) -> None:
        self.writers = (client[1], upstream[1])
        self.tasks = [asyncio.create_task(self._pump(client[0], upstream[1], flowing)),
                      asyncio.create_task(self._pump(upstream[0], client[1], flowing))]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    flowing: asyncio.Event) -> None:
        """Copy one direction; on EOF or error close both sides (a real close propagates)."""
        try:
            while True:
                await flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await flowing.wait()   # a stall that began while reading holds this chunk
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close both sockets (idempotent); the pumps end on their own."""
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()

    async def wait_closed(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class StallingProxy:
    """Forward 127.0.0.1:``port`` to ``host``:``upstream_port`` until told to stall or drop."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pipes: set[_Pipe] = set()
        self._server: asyncio.Server | None = None
        self.connections = 0   # accepted so far: a test can await a reconnect through it

    @property
    def port(self) -> int:
        assert self._server is not None, "use StallingProxy as `async with`"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        """Stop forwarding both ways; the sockets stay open, so no side sees a close."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, held-back bytes included."""
        self._flowing.set()

    def drop(self) -> None:
        """Close every current connection (both sides); the proxy keeps accepting new ones."""
        for pipe in list(self._pipes):
            pipe.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.upstream),
                                              CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        self.connections += 1
        pipe = _Pipe((reader, writer), upstream, self._flowing)
        self._pipes.add(pipe)
        try:
            await asyncio.gather(*pipe.tasks, return_exceptions=True)
        finally:
            self._pipes.discard(pipe)

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        await asyncio.gather(*(pipe.wait_closed() for pipe in list(self._pipes)),
                             return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), CONNECT_TIMEOUT_S)
        self._server = None
