"""Card data sent to the real `edged run` over its socket: refused, never stored, never logged."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from edged.api.codes import INVALID_PARAMS, METHOD_NOT_FOUND
from edged.client import ApiClient, ApiError
from tests.support.daemon import DaemonProcess

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


async def test_card_data_is_refused_and_leaves_no_trace(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
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
            status = await client.call("status")
        assert status["journal"]["last_seq"] == good["seq"] == 1
        journal = Path(daemon.journal)
        files = [journal, journal.with_name(journal.name + "-wal")]
        assert files[1].exists()  # the refused sales would be here before a checkpoint
        for file in files:
            assert PAN.encode() not in digits(file.read_bytes()), file
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            assert db.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    finally:
        daemon.terminate()
    log = daemon.log.read_text()
    rejected = [json.loads(line) for line in log.splitlines() if "api_request_rejected" in line]
    assert len(rejected) == len(SHAPES) + 2
    assert PAN not in "".join(ch for ch in log if ch.isdigit() or ch == "\n").replace("\n", " ")
