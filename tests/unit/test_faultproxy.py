"""The loopback fault proxy, mode by mode, with plain TCP streams on both sides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import pytest

from tests.support.faultproxy import FaultProxy

WAIT_S = 10.0
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Target:
    """A server that hands each accepted connection to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Stream] = asyncio.Queue()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.accepted.put_nowait((reader, writer))

    async def next(self) -> Stream:
        async with asyncio.timeout(WAIT_S):
            return await self.accepted.get()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with Target() as t:
        yield t


@pytest.fixture
async def proxy(target: Target) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(target.port) as p:
        yield p


async def connect(proxy: FaultProxy, target: Target) -> tuple[Stream, Stream]:
    """A client through the proxy and the target's side of the same connection."""
    client = await asyncio.open_connection("127.0.0.1", proxy.port)
    server = await target.next()
    return client, server


async def until(condition: object) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_pass_forwards_both_ways_and_counts_connections(
    proxy: FaultProxy, target: Target
) -> None:
    (c_reader, c_writer), (s_reader, s_writer) = await connect(proxy, target)
    c_writer.write(b"ping")
    assert await s_reader.readexactly(4) == b"ping"
    s_writer.write(b"pong")
    assert await c_reader.readexactly(4) == b"pong"
    (_, c2_writer), _ = await connect(proxy, target)
    assert proxy.connections == 2
    assert proxy.active == 2
    c_writer.close()
    async with asyncio.timeout(WAIT_S):
        assert await s_reader.read() == b""  # the close travels through
    await until(lambda: proxy.active == 1)
    c2_writer.close()


async def test_refuse_closes_the_listener_and_pass_reopens_it(
    proxy: FaultProxy, target: Target
) -> None:
    (_c_reader, c_writer), (s_reader, _s_writer) = await connect(proxy, target)
    port = proxy.port
    await proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    c_writer.write(b"still")  # the open connection is not affected
    assert await s_reader.readexactly(5) == b"still"
    await proxy.set_mode("pass")
    assert proxy.port == port
    (r2, w2), (_sr2, sw2) = await connect(proxy, target)
    sw2.write(b"back")
    assert await r2.readexactly(4) == b"back"
    assert proxy.connections == 2  # the refused attempt never reached the proxy
    w2.close()
    c_writer.close()


async def test_reset_resets_open_connections_on_both_sides_and_new_ones(
    proxy: FaultProxy, target: Target
) -> None:
    (c_reader, c_writer), (s_reader, _s_writer) = await connect(proxy, target)
    c_writer.write(b"x")
    assert await s_reader.readexactly(1) == b"x"
    await proxy.set_mode("reset")
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(ConnectionResetError):
            await c_reader.read(10)
        with pytest.raises(ConnectionResetError):
            await s_reader.read(10)
    r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(ConnectionResetError):
            await r2.read(10)
    assert proxy.connections == 2
    assert target.accepted.empty()  # the new one never reached the target
    await until(lambda: proxy.active == 0)
    w2.close()
    c_writer.close()


async def test_blackhole_swallows_both_ways_and_keeps_the_link_open(
    proxy: FaultProxy, target: Target
) -> None:
    (c_reader, c_writer), (s_reader, s_writer) = await connect(proxy, target)
    await proxy.set_mode("blackhole")
    c_writer.write(b"lost-up")
    s_writer.write(b"lost-down")
    await until(lambda: proxy.swallowed_bytes == len(b"lost-up") + len(b"lost-down"))
    (_r2, w2), _ = await connect(proxy, target)  # new connections are accepted too
    assert proxy.active == 2
    await proxy.set_mode("pass")
    c_writer.write(b"up")
    s_writer.write(b"down")
    # The first bytes each side sees are the ones sent after the fault: nothing leaked.
    assert await s_reader.readexactly(2) == b"up"
    assert await c_reader.readexactly(4) == b"down"
    w2.close()
    c_writer.close()


async def test_blackhole_hides_a_close_until_the_fault_ends(
    proxy: FaultProxy, target: Target
) -> None:
    (_, c_writer), (s_reader, s_writer) = await connect(proxy, target)
    await proxy.set_mode("blackhole")
    c_writer.close()
    s_writer.write(b"into the void")  # the link is still up from the target's side
    await until(lambda: proxy.swallowed_bytes == len(b"into the void"))
    assert not s_reader.at_eof()
    await proxy.set_mode("pass")
    async with asyncio.timeout(WAIT_S):
        assert await s_reader.read() == b""


async def test_drop_upstream_swallows_only_what_the_client_sends(
    proxy: FaultProxy, target: Target
) -> None:
    (c_reader, c_writer), (s_reader, s_writer) = await connect(proxy, target)
    await proxy.set_mode("drop_upstream")
    c_writer.write(b"lost")
    await until(lambda: proxy.swallowed_bytes == 4)
    s_writer.write(b"heard")
    assert await c_reader.readexactly(5) == b"heard"
    await proxy.set_mode("pass")
    c_writer.write(b"ok")
    assert await s_reader.readexactly(2) == b"ok"
    c_writer.close()


async def test_delay_adds_latency_each_way_and_keeps_order(
    proxy: FaultProxy, target: Target
) -> None:
    (c_reader, c_writer), (s_reader, s_writer) = await connect(proxy, target)
    delay_s = 0.2
    await proxy.set_mode("delay", seconds=delay_s)
    loop = asyncio.get_running_loop()
    # Lower bounds only: a slow machine can only make these longer.
    start = loop.time()
    c_writer.write(b"a")
    assert await s_reader.readexactly(1) == b"a"
    assert loop.time() - start >= delay_s
    start = loop.time()
    s_writer.write(b"b")
    assert await c_reader.readexactly(1) == b"b"
    assert loop.time() - start >= delay_s
    for part in (b"1", b"2", b"3"):
        c_writer.write(part)
        await c_writer.drain()
    await proxy.set_mode("pass")  # later bytes never overtake delayed ones
    c_writer.write(b"4")
    assert await s_reader.readexactly(4) == b"1234"
    c_writer.close()


async def test_unknown_mode_and_bad_delay_are_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        await proxy.set_mode("flaky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds > 0"):
        await proxy.set_mode("delay")
    assert proxy.mode == "pass"
