"""A collector that trusts no terminal it does not know, and acks that outlive a broker's memory.

Real `edged run` and `edged collector` processes on a real, anonymous mosquitto.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from edged.client import ApiClient
from tests.integration.test_collector import Terminal
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.sales import cash_sale
from tests.support.waiting import until, until_awaited

EDGECTL = str(Path(sys.executable).with_name("edgectl"))
ACK_TIMEOUT_S = 1.0  # the till resends what is unacknowledged this often


def collector_cli(collector: CollectorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged.cli", "collector", "--config", str(collector.config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    if not Path(db).exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return list(conn.execute(sql))
        except sqlite3.OperationalError:  # not created yet
            return []


async def commit(socket: str, count: int) -> list[dict[str, Any]]:
    async with ApiClient(socket) as client:
        return [await client.call("sale.commit", {"sale": cash_sale()}) for _ in range(count)]


async def status(socket: str) -> dict[str, Any]:
    async with ApiClient(socket) as client:
        result: dict[str, Any] = await client.call("status")
        return result


async def acked(till: DaemonProcess, upto: int) -> bool:
    return bool((await status(till.socket))["outbox"]["acked_upto"] == upto)


def stop(*processes: CollectorProcess | DaemonProcess) -> None:
    """SIGTERM each one that runs (a test may fail before it started them all)."""
    for process in processes:
        if process.running:
            process.terminate()


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found


async def test_an_unknown_terminal_is_refused_until_pinned_then_nothing_is_lost(
    broker: Mosquitto, tmp_path: Path
) -> None:
    collector = CollectorProcess(
        tmp_path / "store", uplink_section(broker.port), extra="trust_on_first_use = false\n"
    )
    till = DaemonProcess(
        tmp_path / "till", uplink=uplink_section(broker.port, ack_timeout_s=ACK_TIMEOUT_S)
    )
    collector.start()
    till.start()
    try:
        sold = await commit(till.socket, 5)
        unpinned = "SELECT seq FROM problems WHERE kind = 'unpinned' ORDER BY seq"
        await until(lambda: [s for (s,) in query(collector.db, unpinned)] == [1, 2, 3, 4, 5])
        await until(lambda: query(collector.db, "SELECT max(count) FROM problems")[0][0] >= 2)
        assert query(collector.db, "SELECT seq FROM transactions") == []
        assert query(collector.db, "SELECT * FROM terminal_keys") == []
        assert (await status(till.socket))["outbox"]["acked_upto"] == 0  # never acknowledged
        refused = log_events(collector.log, "terminal_unpinned")
        assert len(refused) == 1, refused  # once per terminal, though the till resends
        assert refused[0]["level"] == "error"

        shown = subprocess.run(
            [EDGECTL, "--config", str(till.config), "keys", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        till_key = next(w for w in shown.split() if len(w) == 64)
        assert refused[0]["key"] == till_key
        pinned = collector_cli(collector, "keys", "pin", "S1", "T1", till_key)
        assert pinned.returncode == 0, pinned.stderr

        more = await commit(till.socket, 2)  # the till resends 1..5 by itself, with these
        await until_awaited(lambda: acked(till, 7), "the till's whole journal acknowledged")
    finally:
        stop(till, collector)
    stored = query(collector.db, "SELECT seq, hash FROM transactions ORDER BY seq")
    assert [seq for seq, _ in stored] == list(range(1, 8))
    assert [h for _, h in stored] == [r["hash"] for r in sold + more]
    assert query(collector.db, "SELECT pinned_by FROM terminal_keys") == [("admin",)]


async def test_acks_are_republished_after_a_broker_forgot_them_and_a_replaced_till_adopts(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """mosquitto here runs without persistence: a restart forgets every retained message."""
    uplink = uplink_section(broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    collector = CollectorProcess(tmp_path / "store", uplink)
    old = DaemonProcess(tmp_path / "old-till", uplink=uplink_section(broker.port))
    new = DaemonProcess(tmp_path / "new-till", uplink=uplink_section(broker.port))
    collector.start()
    old.start()
    try:
        await commit(old.socket, 4)
        await until_awaited(lambda: acked(old, 4), "the old till acknowledged")
        old.terminate()  # its disk is replaced
        broker.stop()
        broker.start()
        await until(lambda: len(log_events(collector.log, "acks_republished")) == 2)
        async with Terminal(broker.port, "T1", store="S1") as fresh:
            await until(lambda: bool(fresh.acks), "the retained ack after the broker restart")
        assert fresh.acks == [4]

        new.start()  # an empty journal, the same terminal id
        forgot = collector_cli(collector, "keys", "forget", "S1", "T1")  # its new key
        assert forgot.returncode == 0, forgot.stderr
        await commit(new.socket, 2)
        await until_awaited(lambda: acked(new, 7), "the new till acknowledged past the store's")
        found = await status(new.socket)
    finally:
        stop(new, old, collector)
    assert found["journal"]["last_seq"] == 7  # seq 5 declares 1..4 the store's
    stored = query(collector.db, "SELECT seq FROM transactions ORDER BY seq")
    assert [seq for (seq,) in stored] == [1, 2, 3, 4, 6, 7]
    assert query(collector.db, "SELECT seq, kind FROM held") == [(5, "journal_gap")]
    assert query(collector.db, "SELECT kind FROM problems WHERE kind = 'seq_conflict'") == []
