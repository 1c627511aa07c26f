"""Card data sent to the real `edged run` over its socket: refused, never stored, never
published, never logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from edged.api.codes import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR
from edged.client import ApiClient, ApiError
from edged.wire import DEFAULT_TOPIC_PREFIX, Topics, decode_tx
from tests.integration.test_uplink import Observer
from tests.support.daemon import DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import WAIT_S, until

PAN = "4111111111111111"
SHAPES = [PAN, "4111 1111 1111 1111", f"%B{PAN}^DOE/JOHN^2512101?", f";{PAN}=2512101?"]


def sale(name: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 250,
        "lines": [{"sku": "4006381333931", "name": name, "qty": 1, "amount": 250}],
        "payments": [{"method": "cash", "amount": 250}],
    }


def digits(data: bytes) -> bytes:
    return bytes(b for b in data if 0x30 <= b <= 0x39)


def assert_no_pan_in_log(log: str) -> None:
    assert PAN not in "".join(ch for ch in log if ch.isdigit() or ch == "\n").replace("\n", " ")


def published_seqs(payloads: list[bytes]) -> set[int]:
    return {entry.seq for payload in payloads for entry in decode_tx(payload).entries}


async def test_card_data_is_refused_and_leaves_no_trace(tmp_path: Path, broker: Mosquitto) -> None:
    """Also on the store's broker: a second client on `tx` sees both good sales, no PAN."""
    tx = Observer(broker.port, Topics(DEFAULT_TOPIC_PREFIX, "S1", "T1").tx)
    watching = asyncio.create_task(tx.run(), name="tx-observer")
    await asyncio.wait_for(tx.ready.wait(), WAIT_S)
    daemon = DaemonProcess(tmp_path, uplink=uplink_section(broker.port))
    daemon.start()
    try:
        async with ApiClient(daemon.socket) as client:
            good = await client.call("sale.commit", {"sale": sale("Milk 1 l")})
            for shape in SHAPES:
                with pytest.raises(ApiError) as info:
                    await client.call("sale.commit", {"sale": sale(f"gift {shape}")})
                assert info.value.code == INVALID_PARAMS
                assert [e["path"] for e in info.value.data["errors"]] == ["sale.lines[0].name"]
                assert PAN not in str(info.value.data).replace(" ", "")
            with pytest.raises(ApiError) as info:
                await client.call(PAN)  # a PAN as the method name ...
            assert info.value.code == METHOD_NOT_FOUND
            with pytest.raises(ApiError) as info:
                await client.call("status", {PAN: 1})  # ... and as a parameter name
            assert info.value.code == INVALID_PARAMS
            last = await client.call("sale.commit", {"sale": sale("Bread")})
            status = await client.call("status")
        assert (good["seq"], last["seq"], status["journal"]["last_seq"]) == (1, 2, 2)
        await until(lambda: last["seq"] in published_seqs(tx.payloads), "the last sale on tx")
        assert published_seqs(tx.payloads) == {1, 2}
        for payload in tx.payloads:
            assert PAN.encode() not in digits(payload)
        journal = Path(daemon.journal)
        files = [journal, journal.with_name(journal.name + "-wal")]
        assert files[1].exists()  # the refused sales would be here before a checkpoint
        for file in files:
            assert PAN.encode() not in digits(file.read_bytes()), file
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            assert db.execute("SELECT count(*) FROM entries").fetchone() == (2,)
    finally:
        daemon.terminate()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    log = daemon.log.read_text()
    rejected = [json.loads(line) for line in log.splitlines() if "api_request_rejected" in line]
    assert len(rejected) == len(SHAPES) + 2
    assert_no_pan_in_log(log)


GROUPED = "4111 1111 1111 1111"
# Frames the parser refuses (so logged as api_bad_frame), and whether the answer quotes the PAN
MALFORMED: list[tuple[str, int, bool]] = [
    (f'{{"jsonrpc":"2.0","id":1,"method":"status","{PAN}":1}}', INVALID_REQUEST, True),
    (f'{{"jsonrpc":"{GROUPED}","id":1,"method":"status"}}', INVALID_REQUEST, True),
    (
        f'{{"jsonrpc":"2.0","id":1,"method":"status","{GROUPED}":1,"{GROUPED}":2}}',
        INVALID_REQUEST,
        True,
    ),
    (f'{{"jsonrpc":"2.0","id":{{"card":"{PAN}"}},"method":"status"}}', INVALID_REQUEST, False),
    (f'"{PAN}"', INVALID_REQUEST, False),
    (f'{{"jsonrpc":"2.0","id":1,"method":"{PAN}"', PARSE_ERROR, False),
    (f'{{"jsonrpc":"2.0","id":{PAN} x}}', PARSE_ERROR, False),
]


async def answer_to(path: str, frame: str) -> dict[str, Any]:
    """`frame` on a connection of its own: each connection logs its first bad frame in full."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(frame.encode() + b"\n")
        await writer.drain()
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), WAIT_S))
        return answer
    finally:
        writer.close()
        await writer.wait_closed()


async def test_malformed_frames_carrying_a_pan_leave_no_pan_in_the_log(tmp_path: Path) -> None:
    """The client's own answer may quote what it sent; the log line of the bad frame does not."""
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        for frame, code, quoted in MALFORMED:
            error = (await answer_to(daemon.socket, frame))["error"]
            assert error["code"] == code, frame
            assert (PAN in "".join(ch for ch in error["message"] if ch.isdigit())) == quoted
    finally:
        daemon.terminate()
    log = daemon.log.read_text()
    bad = [json.loads(line) for line in log.splitlines() if "api_bad_frame" in line]
    assert [e["code"] for e in bad] == [code for _, code, _ in MALFORMED]
    masked = [e["error"].count("#") == len(PAN) for e in bad]
    assert masked == [quoted for _, _, quoted in MALFORMED]  # the quoting ones, masked
    assert_no_pan_in_log(log)
