"""A loopback TCP proxy whose faults a test switches at runtime.

    async with FaultProxy(broker.port) as proxy:
        connect the client to proxy.port ...
        await proxy.set_mode("blackhole")     # half-open link: bytes vanish both ways
        await proxy.set_mode("delay", seconds=0.2)
        await proxy.set_mode("pass")

Modes:
- `pass`: forward both ways.
- `refuse`: close the listener, so new connections are refused; open ones carry on.
- `reset`: RST every open connection (both sides, SO_LINGER 0) and every new one at accept.
- `blackhole`: accept and keep connections open but swallow every byte both ways; a peer that
  closes is not told to the other side (a half-open link, like a pulled cable).
- `drop_upstream`: swallow client -> target bytes only (the client still hears the target);
  the client's answers (acks, pings) are lost, as if the cable broke one way.
- `delay`: forward after `seconds` of added latency each way, order preserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Literal, Self

from tests.support.ports import free_port

Mode = Literal["pass", "refuse", "reset", "blackhole", "drop_upstream", "delay"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "reset", "blackhole", "drop_upstream", "delay")
CHUNK_BYTES = 65536
QUEUE_CHUNKS = 256  # per direction; reading pauses when full (backpressure)
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
_EOF = b""


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: client side, target side and the task pumping between them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        _rst(self.client)
        if self.upstream is not None:
            _rst(self.upstream)
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    """TCP proxy 127.0.0.1:port -> target_host:target_port with switchable faults."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()  # outside the ephemeral range: see tests/support/ports.py
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.connections = 0  # accepted so far, whatever happened to them
        self.swallowed_bytes = 0  # discarded by blackhole / drop_upstream
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mode_changed = asyncio.Event()

    @property
    def active(self) -> int:
        """Connections currently open through the proxy."""
        return len(self._links)

    async def __aenter__(self) -> Self:
        await self._listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unlisten()
        for link in list(self._links):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def set_mode(self, mode: Mode, *, seconds: float = 0.0) -> None:
        """Switch the fault; `seconds` is the added latency per direction in `delay` mode."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "delay" and seconds <= 0:
            raise ValueError("delay mode needs seconds > 0")
        self.mode = mode
        self.delay_s = seconds if mode == "delay" else 0.0
        if mode == "refuse":
            self._unlisten()
        elif self._server is None:
            await self._listen()
        if mode == "reset":
            for link in list(self._links):
                link.reset()
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _unlisten(self) -> None:
        # close() stops listening at once; wait_closed() would also wait for open links (3.12+).
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        task = asyncio.get_running_loop().create_task(
            self._serve(link, reader), name=f"faultproxy {self.port} link {self.connections}"
        )
        link.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            try:
                async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT_S):
                    up_reader, up_writer = await asyncio.open_connection(
                        self.target_host, self.target_port
                    )
            except (OSError, TimeoutError):
                _rst(link.client)
                return
            link.upstream = up_writer
            if self.mode == "reset":
                link.reset()
                return
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    self._pump(client_reader, up_writer, upstream=True), name="faultproxy up"
                )
                tg.create_task(
                    self._pump(up_reader, link.client, upstream=False), name="faultproxy down"
                )
        except* (OSError, asyncio.IncompleteReadError):
            pass  # a reset or a vanished peer ends the link
        finally:
            self._links.discard(link)
            link.close()

    def _swallows(self, *, upstream: bool) -> bool:
        return self.mode == "blackhole" or (self.mode == "drop_upstream" and upstream)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        """Read one direction into a queue that a writer drains at each chunk's due time."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        loop = asyncio.get_running_loop()

        async def drain() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    raise ConnectionResetError("peer closed")  # ends the link: close both sides
                writer.write(data)
                await writer.drain()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(drain(), name="faultproxy drain")
            while True:
                data = await reader.read(CHUNK_BYTES)
                if not data:
                    # A half-open link hides the close until the fault ends.
                    while self._swallows(upstream=upstream):
                        await self._mode_changed.wait()
                    await queue.put((loop.time() + self.delay_s, _EOF))
                    return
                if self._swallows(upstream=upstream):
                    self.swallowed_bytes += len(data)
                    continue
                await queue.put((loop.time() + self.delay_s, data))
