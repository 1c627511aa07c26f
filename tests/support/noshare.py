"""A loopback proxy in front of mosquitto that says, in its CONNACK, that the broker offers no
shared subscriptions (MQTT v5 property 0x2A = 0), as some brokers and bridges do.

mosquitto itself always offers them, so this is how a test meets such a broker: everything
else passes through untouched, and a subscription made without `$share/` works as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from tests.support.ports import free_port

CONNACK = 0x20
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, index after it) of the variable byte integer at `at`."""
    value = shift = 0
    while True:
        byte = data[at]
        value += (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def without_shared_subscriptions(packet: bytes) -> bytes:
    """A v5 CONNACK packet with "Shared Subscription Available" = 0 added to its properties."""
    if packet[0] != CONNACK:
        raise ValueError(f"not a CONNACK: first byte {packet[0]:#x}")
    _, body_at = read_varint(packet, 1)
    flags_and_code = packet[body_at : body_at + 2]
    props_len, props_at = read_varint(packet, body_at + 2)
    props = packet[props_at : props_at + props_len] + bytes([SHARED_SUBSCRIPTION_AVAILABLE, 0])
    body = flags_and_code + varint(len(props)) + props
    return bytes([CONNACK]) + varint(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet: fixed header, remaining length, body."""
    head = await reader.readexactly(1)
    length_bytes = b""
    while True:
        byte = await reader.readexactly(1)
        length_bytes += byte
        if not byte[0] & 0x80:
            break
    length, _ = read_varint(length_bytes, 0)
    return head + length_bytes + await reader.readexactly(length)


class NoSharedProxy:
    """`async with NoSharedProxy(broker.port) as proxy:` then connect to `proxy.port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.rewritten = 0  # CONNACKs changed
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pump(client_r, up_w))
                tg.create_task(self._down(up_r, client_w))
        except* (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (client_w, up_w):
                w.close()

    async def _down(self, up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        client_w.write(without_shared_subscriptions(await read_packet(up_r)))
        self.rewritten += 1
        await self._pump(up_r, client_w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
