"""The local API's bounds on a real Unix socket: clients, buffered bytes, malformed frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.api import ApiServer, codes
from tests.integration.test_api_server import Client, DictServices, error_of, request, until


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    async with ApiServer(
        tmp_path / "edged.sock", DictServices(), max_clients=4, max_buffered=2 << 20
    ) as api:
        yield api


async def test_clients_over_the_limit_are_refused_and_the_others_keep_working(
    small_server: ApiServer,
) -> None:
    path = Path(small_server.path)
    with structlog.testing.capture_logs() as logs:
        served = [await Client.connect(path) for _ in range(4)]
        for c in served:
            assert "result" in await c.call("status")
        extra = [await Client.connect(path) for _ in range(3)]
        for c in extra:
            error = error_of(await c.recv())
            assert error["code"] == codes.OVERLOADED
            assert "[api] max_clients" in error["message"]
            assert error["data"] == {"limit": "max_clients", "value": 4}
            assert await c.at_eof()
            c.close()
        for c in served:
            assert "result" in await c.call("status")
        for c in served[:2]:
            c.close()
        await until(lambda: small_server.clients == 2)
        late = await Client.connect(path)
        assert "result" in await late.call("status")
        for c in [*served[2:], late]:
            c.close()
        await small_server.close()
    refused = [e for e in logs if e["event"] == "api_client_refused"]
    # the first refusal at once, the other two as one count (at close here, else per interval)
    assert [(e["reason"], e.get("count")) for e in refused] == [
        ("max_clients", None),
        ("max_clients", 2),
    ]


async def test_partial_line_flood_over_the_budget_is_refused_and_status_still_works(
    tmp_path: Path,
) -> None:
    """A 2 MiB budget for 8 clients: a 256 KiB share each. Two polite clients hold a short
    unfinished line meanwhile; of four flooders with almost 1 MiB each, those that push the
    total past the budget are refused, the others are left alone."""
    async with ApiServer(
        tmp_path / "edged.sock", DictServices(), max_clients=8, max_buffered=2 << 20
    ) as server:
        path = Path(server.path)
        polite = [await Client.connect(path) for _ in range(2)]
        for c in polite:
            await c.send(b'{"jsonrpc":"2.0","id":"p","method":"status"')
        flooders = [await Client.connect(path) for _ in range(4)]

        async def flood(c: Client) -> dict[str, Any] | None:
            with contextlib.suppress(ConnectionError):
                for _ in range(16):  # 1 MiB - 16 KiB: under the line limit, over the share
                    await c.send(b"x" * (63 * 1024))
            try:
                async with asyncio.timeout(3):
                    line = await c.reader.readline()
            except TimeoutError:
                return None  # still held, unanswered: its line is not finished
            assert await c.at_eof()
            return error_of(json.loads(line))

        errors = [e for e in await asyncio.gather(*(flood(c) for c in flooders)) if e]
        assert len(errors) >= 2
        for error in errors:
            assert error["code"] == codes.OVERLOADED
            assert error["data"] == {"limit": "max_buffered_bytes", "value": 2 << 20}
            assert "[api] max_buffered_bytes" in error["message"]
        for c in polite:
            await c.send(b"}\n")
            assert (await c.recv())["id"] == "p"
            assert "result" in await c.call("status")
            c.close()
        fresh = await Client.connect(path)
        assert "result" in await fresh.call("status")
        for c in [*flooders, fresh]:
            c.close()


async def test_a_flood_of_malformed_frames_logs_a_few_lines(small_server: ApiServer) -> None:
    c = await Client.connect(Path(small_server.path))
    with structlog.testing.capture_logs() as logs:
        await c.send(b"{not json}\n" * 5000 + request("ok", "status"))
        for _ in range(5000):
            assert error_of(await c.recv())["code"] == codes.PARSE_ERROR
        assert (await c.recv())["id"] == "ok"
        c.close()
        await until(lambda: small_server.clients == 0)
    bad = [e for e in logs if e["event"] == "api_bad_frame"]
    assert 2 <= len(bad) <= 3, bad  # the first, maybe one per 10 s, the rest counted at close
    assert bad[0]["code"] == codes.PARSE_ERROR
    assert bad[-1]["total"] == 5000
