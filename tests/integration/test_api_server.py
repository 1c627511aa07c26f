"""The local API over a real Unix socket, served from a small in-test Services implementation.

The Services here keeps sales in a dict (with the real sale validation): it is the interface
the daemon hands over; the end-to-end tests with the real journal live elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.api import ApiServer, ApiServerError, codes
from edged.chain import canonical
from edged.errors import JournalError, JournalFullError, SaleConflictError
from edged.events import EventHub
from edged.sale import validate_sale

RECV_TIMEOUT_S = 10.0


class DictServices:
    """Services backed by a dict; `gate` holds commits, `fail` makes the next call raise."""

    def __init__(self) -> None:
        self.events = EventHub()
        self.sales: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.committing = 0
        self.max_committing = 0
        self.sync_calls = 0

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc

    async def commit_sale(self, sale: Any) -> dict[str, Any]:
        validate_sale(sale)
        self._maybe_fail()
        self.committing += 1
        self.max_committing = max(self.max_committing, self.committing)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.committing -= 1
        body = canonical(sale)
        known = self.sales.get(sale["id"])
        if known is not None:
            if known["body"] != body:
                raise SaleConflictError(sale["id"], known["seq"])
            return {**known["result"], "duplicate": True}
        self.seq += 1
        result = {
            "seq": self.seq,
            "receipt_no": f"S1-T1-{self.seq:06d}",
            "hash": hashlib.sha256(body).hexdigest(),
            "duplicate": False,
        }
        self.sales[sale["id"]] = {"sale": sale, "body": body, "seq": self.seq, "result": result}
        return result

    async def get_sale(self, sale_id: str) -> dict[str, Any] | None:
        known = self.sales.get(sale_id)
        if known is None:
            return None
        result = known["result"]
        return {
            "sale": known["sale"],
            "seq": known["seq"],
            "receipt_no": result["receipt_no"],
            "hash": result["hash"],
            "acked": False,
        }

    def status(self) -> dict[str, Any]:
        self._maybe_fail()
        return {
            "terminal": {"store_id": "S1", "terminal_id": "T1"},
            "link": {"state": "disabled", "since": "2026-11-23T09:41:00.123Z"},
            "outbox": {"pending": len(self.sales), "oldest_created_at": None},
            "journal": {"last_seq": self.seq},
            "devices": {},
        }

    async def sync_now(self) -> dict[str, Any]:
        self.sync_calls += 1
        return {"link": "disabled", "pending": len(self.sales)}


def make_sale(total: int = 250) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": "4006381333931", "qty": 1, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
    }


def request(req_id: Any, method: str, params: Any = None) -> bytes:
    frame: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        frame["params"] = params
    return json.dumps(frame).encode() + b"\n"


class Client:
    """A raw line client: what is sent and received is exactly what is on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = 0

    @classmethod
    async def connect(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 21)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), f"connection closed, got {line!r}"
        message: dict[str, Any] = json.loads(line)
        assert message["jsonrpc"] == "2.0"
        return message

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        """One request, its response (the caller makes sure no events interleave)."""
        self._ids += 1
        await self.send(request(self._ids, method, params))
        response = await self.recv()
        assert response["id"] == self._ids
        return response

    async def at_eof(self) -> bool:
        """Read until the server closes; True once it has."""
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    assert "result" not in response, response
    error: dict[str, Any] = response["error"]
    return error


@pytest.fixture
def services() -> DictServices:
    return DictServices()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "edged.sock"


@pytest.fixture
async def server(sock_path: Path, services: DictServices) -> AsyncIterator[ApiServer]:
    async with ApiServer(sock_path, services) as api:
        yield api


@pytest.fixture
async def client(server: ApiServer, sock_path: Path) -> AsyncIterator[Client]:
    c = await Client.connect(sock_path)
    yield c
    c.close()


async def until(condition: Any, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


# --- socket file ---------------------------------------------------------------------------


async def test_socket_has_mode_0660_and_is_removed_on_close(
    sock_path: Path, services: DictServices
) -> None:
    async with ApiServer(sock_path, services):
        mode = os.stat(sock_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
    assert not sock_path.exists()


async def test_stale_socket_file_is_replaced(sock_path: Path, services: DictServices) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))  # a crashed daemon's socket: the file stays, nobody listens
    dead.close()
    assert sock_path.exists()
    async with ApiServer(sock_path, services):
        c = await Client.connect(sock_path)
        assert (await c.call("status"))["result"]["journal"]["last_seq"] == 0
        c.close()


async def test_live_socket_is_not_taken_over(server: ApiServer, sock_path: Path) -> None:
    second = ApiServer(sock_path, DictServices())
    with pytest.raises(ApiServerError, match="another process is serving this socket"):
        await second.start()
    await second.close()
    c = await Client.connect(sock_path)  # the first server still serves
    assert "result" in await c.call("status")
    c.close()


async def test_path_that_is_not_a_socket_is_refused(
    sock_path: Path, services: DictServices
) -> None:
    sock_path.write_text("keep me")
    with pytest.raises(ApiServerError, match="exists and is not a socket"):
        await ApiServer(sock_path, services).start()
    assert sock_path.read_text() == "keep me"


async def test_missing_directory_is_a_clear_error(tmp_path: Path, services: DictServices) -> None:
    with pytest.raises(ApiServerError, match="cannot create the API socket"):
        await ApiServer(tmp_path / "nope" / "edged.sock", services).start()


# --- methods -------------------------------------------------------------------------------


async def test_status(client: Client) -> None:
    status = (await client.call("status"))["result"]
    assert status["terminal"] == {"store_id": "S1", "terminal_id": "T1"}
    assert status["link"]["state"] == "disabled"


async def test_commit_get_duplicate_and_conflict(client: Client) -> None:
    sale = make_sale()
    first = (await client.call("sale.commit", {"sale": sale}))["result"]
    assert first["seq"] == 1
    assert first["receipt_no"] == "S1-T1-000001"
    assert first["duplicate"] is False
    again = (await client.call("sale.commit", [sale]))["result"]
    assert again == {**first, "duplicate": True}

    got = (await client.call("sale.get", {"id": sale["id"]}))["result"]
    assert got["sale"] == sale
    assert (got["seq"], got["receipt_no"], got["hash"], got["acked"]) == (
        1,
        "S1-T1-000001",
        first["hash"],
        False,
    )

    other = {**sale, "total": 300, "lines": [{"sku": "1", "qty": 1, "amount": 300}]}
    other["payments"] = [{"method": "cash", "amount": 300}]
    conflict = error_of(await client.call("sale.commit", {"sale": other}))
    assert conflict["code"] == codes.SALE_CONFLICT
    assert conflict["data"] == {"id": sale["id"], "seq": 1}


async def test_invalid_sale_lists_every_path(client: Client) -> None:
    sale = make_sale()
    sale["lines"].append({"sku": "2", "qty": 1, "amount": 1.5})
    error = error_of(await client.call("sale.commit", {"sale": sale}))
    assert error["code"] == codes.INVALID_PARAMS
    paths = [e["path"] for e in error["data"]["errors"]]
    assert "sale.lines[1].amount" in paths
    assert "sale.lines[1].amount" in error["message"]


async def test_param_errors_name_the_parameter(client: Client) -> None:
    missing = error_of(await client.call("sale.commit", {}))
    assert missing["code"] == codes.INVALID_PARAMS
    assert missing["data"]["errors"] == [{"path": "sale", "problem": "is required"}]
    bad_id = error_of(await client.call("sale.get", {"id": 5}))
    assert bad_id["code"] == codes.INVALID_PARAMS
    assert bad_id["data"]["errors"][0]["path"] == "id"
    typo = error_of(await client.call("sale.get", {"sale_id": "x"}))
    assert sorted(e["path"] for e in typo["data"]["errors"]) == ["id", "sale_id"]


async def test_sale_not_found(client: Client) -> None:
    error = error_of(await client.call("sale.get", {"id": "no-such-sale"}))
    assert error["code"] == codes.SALE_NOT_FOUND
    assert error["data"] == {"id": "no-such-sale"}


async def test_unknown_method(client: Client) -> None:
    error = error_of(await client.call("sale.delete", {"id": "x"}))
    assert error["code"] == codes.METHOD_NOT_FOUND
    assert "sale.commit" in error["message"]


async def test_sync_now(client: Client, services: DictServices) -> None:
    assert (await client.call("sync.now"))["result"] == {"link": "disabled", "pending": 0}
    assert services.sync_calls == 1


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (JournalFullError("no space left on /var/lib/edged"), codes.JOURNAL_FULL),
        (JournalError("disk I/O error writing journal.db"), codes.JOURNAL_ERROR),
    ],
)
async def test_journal_errors_have_their_codes(
    client: Client, services: DictServices, exc: Exception, code: int
) -> None:
    services.fail = exc
    error = error_of(await client.call("sale.commit", {"sale": make_sale()}))
    assert error["code"] == code
    assert str(exc) in error["message"]
    assert services.seq == 0
    assert (await client.call("sale.commit", {"sale": make_sale()}))["result"]["seq"] == 1


async def test_handler_crash_is_an_internal_error_and_the_server_lives_on(
    client: Client, services: DictServices
) -> None:
    services.fail = RuntimeError("boom")
    with structlog.testing.capture_logs() as logs:
        error = error_of(await client.call("status"))
    assert error["code"] == codes.INTERNAL_ERROR
    assert error["data"] == {"error": "RuntimeError"}
    assert any(e["event"] == "api_handler_failed" for e in logs)
    assert "result" in await client.call("status")


async def test_notification_gets_no_answer(client: Client, services: DictServices) -> None:
    await client.send(b'{"jsonrpc":"2.0","method":"sync.now"}\n')
    await client.send(b'{"jsonrpc":"2.0","method":"no.such.method"}\n')
    response = await client.call("status")  # the first line back answers this request
    assert "result" in response
    assert services.sync_calls == 1


# --- framing and protocol errors -----------------------------------------------------------


async def test_malformed_lines_then_good_ones_on_the_same_connection(client: Client) -> None:
    await client.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    await client.send(b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"status"}\n')
    await client.send(b"[]\n")
    await client.send(b'{"jsonrpc":"2.0","id":9,"method":"status","params":"x"}\n')
    await client.send(b"\n   \n")  # blank lines are ignored
    await client.send(request("good", "status"))
    parse = error_of(await client.recv())
    assert parse["code"] == codes.PARSE_ERROR
    assert "byte 38" in parse["message"]
    utf8 = error_of(await client.recv())
    assert utf8["code"] == codes.PARSE_ERROR
    assert "invalid UTF-8 at byte 23" in utf8["message"]
    batch = error_of(await client.recv())
    assert batch["code"] == codes.INVALID_REQUEST
    assert "empty batch" in batch["message"]
    bad_params = await client.recv()
    assert bad_params["id"] == 9
    assert error_of(bad_params)["code"] == codes.INVALID_REQUEST
    good = await client.recv()
    assert good["id"] == "good"
    assert "result" in good


async def test_oversize_frame_closes_only_that_connection(
    server: ApiServer, sock_path: Path
) -> None:
    other = await Client.connect(sock_path)
    big = await Client.connect(sock_path)
    with structlog.testing.capture_logs() as logs:
        await big.send(request(1, "status"))
        await big.send(b'{"jsonrpc":"2.0","id":2,"method":"status","params":{"pad":"')
        big.writer.write(b"x" * (1 << 20) + b'"}}\n')
        assert "result" in await big.recv()
        error = error_of(await big.recv())
        assert error["code"] == codes.INVALID_REQUEST
        assert "1 MiB" in error["message"]
        assert await big.at_eof()
    assert [e["peer"] for e in logs if e["event"] == "api_frame_oversize"] == [2]
    assert "result" in await other.call("status")
    big.close()
    other.close()


async def test_trailing_request_without_newline_is_answered_at_eof(client: Client) -> None:
    await client.send(b'{"jsonrpc":"2.0","id":"last","method":"status"}')
    client.writer.write_eof()
    response = await client.recv()
    assert response["id"] == "last"
    assert "result" in response
    assert await client.at_eof()


# --- concurrency and backpressure ----------------------------------------------------------


async def test_concurrent_clients(server: ApiServer, sock_path: Path) -> None:
    async def one_client(n: int) -> list[int]:
        c = await Client.connect(sock_path)
        seqs = [
            (await c.call("sale.commit", {"sale": make_sale(100 + n)}))["result"]["seq"]
            for _ in range(10)
        ]
        c.close()
        return seqs

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one_client(n)) for n in range(20)]
    seqs = sorted(s for t in tasks for s in t.result())
    assert seqs == list(range(1, 201))


async def test_pipelined_requests_run_concurrently_up_to_the_bound(
    client: Client, services: DictServices
) -> None:
    services.gate = asyncio.Event()
    sales = [make_sale() for _ in range(100)]
    await client.send(b"".join(request(i, "sale.commit", {"sale": s}) for i, s in enumerate(sales)))
    await until(lambda: services.committing == 32)
    services.gate.set()
    responses = [await client.recv() for _ in sales]
    assert sorted(r["id"] for r in responses) == list(range(100))
    assert sorted(r["result"]["seq"] for r in responses) == list(range(1, 101))
    assert services.max_committing == 32


async def test_client_that_pipelines_without_reading_is_slowed_not_dropped(
    sock_path: Path, services: DictServices
) -> None:
    async with ApiServer(sock_path, services, send_queue=16) as server:
        c = await Client.connect(sock_path)
        count = 20_000  # about 1 MB of requests, 4 MB of answers: more than socket buffers hold
        c.writer.write(b"".join(request(i, "status") for i in range(count)))
        with structlog.testing.capture_logs() as logs:
            await until(lambda: c.writer.transport.get_write_buffer_size() > 0)
            responses = [await c.recv() for _ in range(count)]
        assert sorted(r["id"] for r in responses) == list(range(count))
        assert all("result" in r for r in responses)
        assert not [e for e in logs if e["event"] == "api_client_dropped"]
        assert server.clients == 1
        c.close()


async def test_subscribe_and_notifications(client: Client, services: DictServices) -> None:
    unknown = error_of(await client.call("subscribe", {"events": ["link", "weather"]}))
    assert unknown["code"] == codes.INVALID_PARAMS
    assert unknown["data"]["errors"][0]["path"] == "events[1]"
    assert "weather" in unknown["data"]["errors"][0]["problem"]

    answer = await client.call("subscribe", {"events": ["outbox", "link"]})
    assert answer["result"] == {"events": ["link", "outbox"]}
    services.events.publish("device", {"name": "printer", "state": "ok"})  # not subscribed
    link = {"state": "online", "since": "2026-11-23T09:41:00.123Z"}
    services.events.publish("link", link)
    services.events.publish("outbox", {"pending": 3})
    first, second = await client.recv(), await client.recv()
    assert first == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {
            "type": "link",
            "data": {"state": "online", "since": "2026-11-23T09:41:00.123Z"},
        },
    }
    assert second["params"] == {"type": "outbox", "data": {"pending": 3}}

    assert (await client.call("subscribe", {"events": []}))["result"] == {"events": []}
    services.events.publish("link", {"state": "offline"})  # unsubscribed: never sent
    await client.call("subscribe", [["device"]])
    services.events.publish("device", {"name": "scanner", "state": "ok"})
    event = await client.recv()
    assert event["params"] == {"type": "device", "data": {"name": "scanner", "state": "ok"}}


async def test_stuck_client_is_dropped_and_others_are_served(
    sock_path: Path, services: DictServices
) -> None:
    payload = {"pad": "x" * 1024}
    async with ApiServer(sock_path, services, send_queue=64) as server:
        stuck = await Client.connect(sock_path)
        await stuck.send(request(1, "subscribe", {"events": ["outbox"]}))
        good = await Client.connect(sock_path)
        assert (await good.call("subscribe", {"events": ["link"]}))["result"]
        await until(lambda: server.clients == 2)
        published = 0
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(20):
                while server.clients == 2:  # stuck never reads; publishing never blocks
                    services.events.publish("outbox", payload)
                    published += 1
                    await asyncio.sleep(0)
        dropped = [e for e in logs if e["event"] == "api_client_dropped"]
        assert len(dropped) == 1
        assert dropped[0]["peer"] == 1
        assert "send queue full" in dropped[0]["reason"]
        assert published > 64
        services.events.publish("link", {"state": "online"})
        assert (await good.recv())["params"] == {"type": "link", "data": {"state": "online"}}
        assert "result" in await good.call("status")
        assert await stuck.at_eof()
        stuck.close()
        good.close()


# --- shutdown ------------------------------------------------------------------------------


async def test_close_finishes_in_flight_requests_and_refuses_new_ones(
    sock_path: Path, services: DictServices
) -> None:
    services.gate = asyncio.Event()
    server = ApiServer(sock_path, services)
    await server.start()
    c = await Client.connect(sock_path)
    sale = make_sale()
    await c.send(request("commit", "sale.commit", {"sale": sale}))
    await until(lambda: services.committing == 1)
    closing = asyncio.create_task(server.close())
    await until(lambda: server.closing)
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        await Client.connect(sock_path)  # no longer accepting
    await c.send(request("late", "status"))
    refused = await c.recv()
    assert refused["id"] == "late"
    assert error_of(refused)["code"] == codes.SHUTTING_DOWN
    services.gate.set()
    committed = await c.recv()
    assert committed["id"] == "commit"
    assert committed["result"]["seq"] == 1
    assert await c.at_eof()
    await closing
    assert not sock_path.exists()
    c.close()


async def test_close_gives_up_on_a_hung_request_after_its_timeout(
    sock_path: Path, services: DictServices
) -> None:
    services.gate = asyncio.Event()  # never set: the commit hangs
    server = ApiServer(sock_path, services, close_timeout_s=0.2)
    await server.start()
    c = await Client.connect(sock_path)
    await c.send(request("stuck", "sale.commit", {"sale": make_sale()}))
    await until(lambda: services.committing == 1)
    with structlog.testing.capture_logs() as logs:
        async with asyncio.timeout(20):
            await server.close()
    assert [e["in_flight"] for e in logs if e["event"] == "api_close_timeout"] == [1]
    assert services.committing == 0  # the hung call was cancelled, not left behind
    assert await c.at_eof()
    assert not sock_path.exists()
    c.close()
