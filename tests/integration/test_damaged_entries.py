"""A damaged unsent journal entry on a real file: forwarded flagged, the stream goes on, and
verify, status, doctor and the journal commands say which seq (issue 10 item 3)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.client import ApiClient, ApiError
from edged.entrykinds import DamagedEntry, special_of
from edged.events import EventHub
from edged.journal import Journal
from edged.wire import decode_tx
from tests.integration.test_uplink import STORE, TERMINAL, Acker, make_uplink, running, uplink_cfg
from tests.support.daemon import DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import POLL_S, WAIT_S, until

EDGECTL = str(Path(sys.executable).with_name("edgectl"))
RUN_TIMEOUT_S = 120.0  # a guard against hangs, never a measurement
NOT_UTF8 = "UPDATE entries SET sale = CAST(X'7B2261223A22FF227D' AS TEXT) WHERE seq = 3"


def sale(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100 + n,
        "lines": [{"sku": f"SKU-{n}", "qty": 1, "amount": 100 + n}],
        "payments": [{"method": "cash", "amount": 100 + n}],
    }


async def damaged_journal(path: Path, store: str, terminal: str) -> list[str]:
    """Five sales, seq 3's no longer UTF-8; returns the sale ids."""
    j = await Journal.open(path, store_id=store, terminal_id=terminal)
    for n in range(1, 6):
        await j.commit(sale(n))
    ids = [e.id for e in await j.unacked(0, 10)]
    await j.close()
    with sqlite3.connect(path) as conn:
        conn.execute(NOT_UTF8)
    return ids


def edgectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGECTL, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


async def test_forwarding_goes_on_past_a_damaged_entry_said_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    await damaged_journal(path, STORE, TERMINAL)
    journal = await Journal.open(path, store_id=STORE, terminal_id=TERMINAL)
    events = EventHub()
    said = events.subscribe(["journal"], maxsize=100)
    acker = Acker(broker.port, ignore_first=1)  # the first batch is lost: it is sent again
    uplink = make_uplink(uplink_cfg(broker, batch_max=5, window=1), journal, events)
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(acker.run()):
                await acker.ready.wait()
                async with running(uplink.run()):
                    await until(lambda: journal.stats().acked_upto == 5, "acked past seq 3")
                    await journal.commit(sale(6))  # and selling and forwarding go on
                    await until(lambda: journal.stats().acked_upto == 6, "acked seq 6")
        assert journal.damaged.status() == {"damaged": [3], "damaged_count": 1}
    finally:
        await journal.close()
    assert uplink.forwarder.resends >= 1  # seq 3 was read and sent twice ...
    damaged_logs = [e for e in logs if e["event"] == "journal_entry_damaged"]
    assert [(e["log_level"], e["seq"]) for e in damaged_logs] == [("error", 3)]  # ... said once
    assert "sale is not valid UTF-8" in damaged_logs[0]["problem"]
    assert all(b"\xff" not in repr(e).encode() for e in damaged_logs)
    event = await anext(aiter(said))
    assert (event.type, event.data["kind"], event.data["seq"]) == ("journal", "damaged_entry", 3)
    sent = [e for p in acker.payloads for e in decode_tx(p).entries if e.seq == 3]
    record = special_of(bytes(sent[0].sale))
    assert isinstance(record, DamagedEntry)
    assert record.raw_bytes() == b'{"a":"\xff"}'


async def test_verify_tail_export_status_and_doctor_name_the_damaged_seq(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink_section(broker.port))
    ids = await damaged_journal(Path(daemon.journal), daemon.store, daemon.terminal)
    config = str(daemon.config)

    verify = edgectl("--config", config, "journal", "verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "BROKEN at seq 3: sale is not valid UTF-8" in verify.stdout
    report = json.loads(edgectl("--config", config, "journal", "verify", "--json").stdout)
    assert (report["ok"], report["seq"], report["damaged"]) == (False, 3, [3])

    tail = edgectl("--config", config, "journal", "tail")
    assert tail.returncode == 0, tail.stderr
    assert "DAMAGED" in next(line for line in tail.stdout.splitlines() if "-000003" in line)
    outbox = edgectl("--config", config, "outbox", "--json")
    assert outbox.returncode == 0, outbox.stderr
    assert [e["seq"] for e in json.loads(outbox.stdout)["entries"] if e["damage"]] == [3]
    export = edgectl("--config", config, "journal", "export")
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[2]["sale"]["damaged_entry"]["problem"].startswith("sale is not valid UTF-8")

    daemon.start()
    try:
        async with ApiClient(daemon.socket) as client:
            status = await client.call("status")
            async with asyncio.timeout(WAIT_S):  # the forwarder reads the tail once online
                while not status["journal"]["damaged"]:
                    await asyncio.sleep(POLL_S)
                    status = await client.call("status")
            assert (status["journal"]["damaged"], status["journal"]["damaged_count"]) == ([3], 1)
            with pytest.raises(ApiError, match=r"seq 3\) is damaged in the journal"):
                await client.call("sale.get", {"id": ids[2]})
        human = edgectl("--config", config, "status")
        assert "damaged" in human.stdout and "seq 3" in human.stdout
        doctor = json.loads(edgectl("--config", config, "doctor", "--json").stdout)
        (check,) = [c for c in doctor["checks"] if c["name"] == "journal"]
        assert check["level"] == "FAIL"
        assert "1 damaged entry (seq 3)" in check["found"]
        assert "edgectl journal backup" in check["todo"]
    finally:
        daemon.terminate()
