"""The real `edged run` process: kill -9 mid-burst, clean SIGTERM, exit codes, edgectl."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edged.api.codes import SALE_CONFLICT, SHUTTING_DOWN
from edged.client import ApiClient, ApiError
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

CLIENTS = 6


def sale(total: int = 250) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": "4006381333931", "qty": 1, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
    }


def edgectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys, edged.ctl; sys.exit(edged.ctl.main())", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


Unknown = dict[str, dict[str, Any]]


async def burst(path: str, confirmed: dict[str, tuple[int, str]], unknown: Unknown) -> None:
    """Commit until the connection dies; record what returned and what was in flight."""
    try:
        async with ApiClient(path) as client:
            while True:
                s = sale()
                unknown[s["id"]] = s
                try:
                    result = await client.call("sale.commit", {"sale": s})
                except ApiError as exc:
                    if exc.code != SHUTTING_DOWN:
                        raise
                    del unknown[s["id"]]  # refused before it ran: certainly not committed
                    return
                del unknown[s["id"]]
                confirmed[s["id"]] = (result["seq"], result["receipt_no"])
    except (ConnectionError, OSError, TimeoutError):
        return


async def stop_mid_burst(
    daemon: DaemonProcess, count: int, stop: Callable[[], object]
) -> tuple[dict[str, tuple[int, str]], Unknown]:
    """Commit from CLIENTS clients until `count` returned, then `stop` the daemon mid-burst."""
    confirmed: dict[str, tuple[int, str]] = {}
    unknown: Unknown = {}
    tasks = [asyncio.create_task(burst(daemon.socket, confirmed, unknown)) for _ in range(CLIENTS)]
    async with asyncio.timeout(60):
        while len(confirmed) < count:
            await asyncio.sleep(0.01)
    await asyncio.to_thread(stop)
    await asyncio.gather(*tasks)
    return confirmed, unknown


async def test_kill_9_mid_burst_loses_no_confirmed_sale(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    confirmed, unknown = await stop_mid_burst(daemon, 400, daemon.kill)
    assert unknown, "the kill should have caught commits in flight"

    daemon.start()
    async with ApiClient(daemon.socket) as client:
        for sale_id, (seq, receipt_no) in confirmed.items():
            got = await client.call("sale.get", {"id": sale_id})
            assert (got["seq"], got["receipt_no"]) == (seq, receipt_no)
        last_seq = (await client.call("status"))["journal"]["last_seq"]
    with sqlite3.connect(daemon.journal) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM entries ORDER BY seq")]
    assert seqs == list(range(1, last_seq + 1))  # gapless
    assert last_seq >= len(confirmed)
    assert last_seq <= len(confirmed) + len(unknown)
    verify = edgectl("journal", "verify", "--journal", daemon.journal)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"seq 1..{last_seq}" in verify.stdout
    assert daemon.terminate() == 0

    # Alter one stored entry behind the daemon's back: verify names it.
    victim = seqs[len(seqs) // 2]
    with sqlite3.connect(daemon.journal) as conn:
        conn.execute(
            "UPDATE entries SET sale = replace(sale, '250', '25') WHERE seq = ?", (victim,)
        )
    verify = edgectl("journal", "verify", "--journal", daemon.journal)
    assert verify.returncode == 1
    assert f"seq {victim}" in verify.stdout


async def test_retried_commits_after_a_crash_are_idempotent(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    confirmed, unknown = await stop_mid_burst(daemon, 100, daemon.kill)
    daemon.start()
    async with ApiClient(daemon.socket) as client:
        # A UI that lost the answer retries with the same id: nothing is stored twice.
        for sale_id, body in unknown.items():
            retried = await client.call("sale.commit", {"sale": body})
            got = await client.call("sale.get", {"id": sale_id})
            assert got["seq"] == retried["seq"]
        # The same id with other content is refused, not stored.
        with pytest.raises(ApiError) as info:
            await client.call("sale.commit", {"sale": {**sale(999), "id": next(iter(confirmed))}})
        assert info.value.code == SALE_CONFLICT
        status = await client.call("status")
    # Every sale exactly once: the confirmed ones plus each retried one.
    assert status["journal"]["last_seq"] == len(confirmed) + len(unknown)
    daemon.terminate()


async def test_sigterm_finishes_in_flight_commits(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    codes: list[int] = []
    confirmed, _ = await stop_mid_burst(daemon, 200, lambda: codes.append(daemon.terminate()))
    assert codes == [0]
    assert not Path(daemon.socket).exists()
    with sqlite3.connect(daemon.journal) as conn:
        stored = {
            row[0]: (row[1], row[2])
            for row in conn.execute("SELECT id, seq, receipt_no FROM entries")
        }
    for sale_id, value in confirmed.items():
        assert stored[sale_id] == value
    assert "daemon_stopped" in daemon.log.read_text()


async def test_garbage_never_stops_the_daemon(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    frames: list[bytes] = [
        b"{",
        b"}",
        b"[]",
        b"null",
        b"42",
        b'"x"',
        b"\xff\xfe\x00",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"1.0","id":1,"method":"status"}',
        b'{"jsonrpc":"2.0","id":{},"method":"status"}',
        b'{"jsonrpc":"2.0","id":1,"method":7}',
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":7}',
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":{"sale":[]}}',
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":{"sale":{"total":1.5}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"sale.get","params":{"id":5}}',
        b'{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"events":"all"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"nope"}',
        b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":' + b"[" * 5000,
        b'{"jsonrpc":"2.0","id":1e400,"method":"status"}',
    ]
    answered = 0
    for round_ in range(150):
        reader, writer = await asyncio.open_unix_connection(daemon.socket, limit=1 << 21)
        for frame in frames:
            writer.write(frame + b"\n")
        writer.write(b"x" * 7 + bytes(range(256)) + b"\n")
        if round_ % 10 == 0:
            writer.write(b"{" + b" " * (1 << 20) + b"}\n")  # oversize: connection closed
        else:
            writer.write(b'{"jsonrpc":"2.0","id":"ok","method":"status"}\n')
        if round_ % 3 == 0:
            writer.write(b'{"jsonrpc":"2.0","id":1,"method":"sta')  # truncated, then gone
        await writer.drain()
        while line := await reader.readline():
            answered += 1
            reply = json.loads(line)
            assert reply["jsonrpc"] == "2.0"
            if reply.get("id") == "ok":
                break
        writer.close()
    assert answered > 2000
    async with ApiClient(daemon.socket) as client:
        status = await client.call("status")
        assert status["link"]["state"] == "disabled"
        assert status["journal"]["last_seq"] == 0
        with pytest.raises(ApiError) as info:
            await client.call("sale.commit", {"sale": {**sale(), "total": 1.5}})
        assert info.value.code == -32602
    assert daemon.proc is not None and daemon.proc.poll() is None
    daemon.terminate()


async def test_edgectl_status(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    async with ApiClient(daemon.socket) as client:
        await client.call("sale.commit", {"sale": sale()})
    human = edgectl("status", "--socket", daemon.socket)
    assert human.returncode == 0, human.stderr
    assert "S1 / T1" in human.stdout
    assert "disabled" in human.stdout
    machine = edgectl("status", "--socket", daemon.socket, "--json")
    assert json.loads(machine.stdout)["journal"]["last_seq"] == 1
    by_config = edgectl("--config", str(daemon.config), "status")
    assert by_config.returncode == 0
    tail = edgectl("--config", str(daemon.config), "journal", "tail")
    assert "S1-T1-000001" in tail.stdout
    assert "2.50 EUR" in tail.stdout
    daemon.terminate()
    gone = edgectl("status", "--socket", daemon.socket)
    assert gone.returncode == 2
    assert "is edged running" in gone.stderr


def test_config_error_exits_78_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    config.write_text('[terminal]\nstore_id = "S1"\nterminal_id = "T1"\ncolour = "red"\n')
    run = subprocess.run(
        [sys.executable, "-m", "edged.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 78
    assert run.stderr.strip().splitlines() == [
        f"edged: config error: {config}: terminal.colour: unknown key"
    ]


def test_collector_db_in_a_missing_folder_is_a_config_error_78(tmp_path: Path) -> None:
    """Three slashes make the path relative to the config file: exit 78 (systemd does not
    restart it), naming the absolute path it resolved to and the four-slash form."""
    config = tmp_path / "collector.toml"
    config.write_text(
        '[uplink]\nhost = "127.0.0.1"\n[collector]\ndb = "sqlite:///var/lib/edged/collector.db"\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "edged.cli", "collector", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 78, run.stderr
    resolved = tmp_path / "var/lib/edged/collector.db"
    assert f"collector.db: 'sqlite:///var/lib/edged/collector.db' resolves to {resolved}" in (
        run.stderr
    )
    assert "sqlite:////var/lib/edged-collector/collector.db" in run.stderr
    assert not (tmp_path / "var").exists()


def test_corrupt_journal_is_a_startup_error(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    Path(daemon.journal).write_bytes(b"garbage" * 1000)
    with pytest.raises(RuntimeError, match="exited 74"):
        daemon.start()
    assert "not a SQLite file" in daemon.log.read_text()
    assert Path(daemon.journal).read_bytes().startswith(b"garbage")


class Notified:
    """`python -m edged.cli ARGS` under a real NOTIFY_SOCKET, and every field it has sent."""

    def __init__(self, args: list[str], notify_path: Path, **env: str) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(notify_path))
        self.socket.settimeout(20)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edged.cli", *args],
            env=dict(os.environ, NOTIFY_SOCKET=str(notify_path), **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.seen: list[bytes] = []

    def until(self, done: Callable[[list[bytes]], bool]) -> None:
        while not done(self.seen):
            self.seen += self.socket.recv(4096).split(b"\n")

    def until_field(self, prefix: bytes) -> None:
        self.until(lambda seen: any(field.startswith(prefix) for field in seen))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(20)
        self.socket.close()


def test_systemd_notifications_from_the_real_process(tmp_path: Path) -> None:
    """READY with a STATUS line, WATCHDOG pings at half of WATCHDOG_USEC, STOPPING on SIGTERM."""
    daemon = DaemonProcess(tmp_path)
    run = ["run", "--config", str(daemon.config)]
    notified = Notified(run, tmp_path / "notify", WATCHDOG_USEC="400000")
    try:
        notified.until(lambda seen: seen.count(b"WATCHDOG=1") >= 3)
        assert b"READY=1" in notified.seen
        assert any(f.startswith(b"STATUS=link disabled, 0 pending") for f in notified.seen)
        notified.proc.send_signal(signal.SIGTERM)
        notified.until_field(b"STOPPING=1")
        assert notified.proc.wait(20) == 0
    finally:
        notified.close()


def test_systemd_status_follows_the_link(tmp_path: Path) -> None:
    """`systemctl status` shows the link leaving `connecting`, and the backlog growing."""
    dead_port = free_port()  # nothing listens there
    daemon = DaemonProcess(tmp_path, uplink=uplink_section(dead_port, reconnect_max_s=1))
    notified = Notified(["run", "--config", str(daemon.config)], tmp_path / "notify")
    try:
        notified.until_field(b"STATUS=link offline")
        assert b"READY=1" in notified.seen

        async def commit() -> None:
            async with ApiClient(daemon.socket) as client:
                await client.call("sale.commit", {"sale": sale()})

        asyncio.run(commit())
        notified.until_field(b"STATUS=link offline, 1 pending")
    finally:
        notified.close()


def test_collector_notifies_ready_and_stopping(tmp_path: Path, broker: Mosquitto) -> None:
    """edged-collector.service is Type=notify: READY once subscribed, STOPPING on SIGTERM."""
    collector = CollectorProcess(tmp_path, uplink_section(broker.port))
    notified = Notified(["collector", "--config", str(collector.config)], tmp_path / "notify")
    try:
        notified.until_field(b"READY=1")
        notified.proc.send_signal(signal.SIGTERM)
        notified.until_field(b"STOPPING=1")
        assert notified.proc.wait(20) == 0
    finally:
        notified.close()
