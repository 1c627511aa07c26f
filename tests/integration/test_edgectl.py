"""`edgectl` as the technician runs it: the installed command against a real daemon process.

The till has a simulated printer (with a drawer sensor), scanner and payment terminal, and an
uplink to a real mosquitto with no collector behind it, so its sales stay pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from PIL import Image

from edged.chain import entry_bytes, entry_hash
from edged.client import ApiClient
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_tls_users
from tests.support.ports import free_port
from tests.support.waiting import until, until_awaited

EDGECTL = str(Path(sys.executable).with_name("edgectl"))
RUN_TIMEOUT_S = 120.0  # a guard against hangs, never a measurement
SALES = 3
SIM_DEVICES = """
[devices.printer]
driver = "sim"
drawer_sensor = true
render_dir = "{paper}"
[devices.scanner]
driver = "sim"
[devices.payment]
driver = "sim"
"""


def edgectl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGECTL, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        env=env,
    )


def sale(total: int = 1250) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [
            {"sku": "4006381333931", "name": "Käse", "qty": 1, "unit_price": total, "amount": total}
        ],
        "payments": [{"method": "cash", "amount": total}],
    }


async def commit(socket: str, count: int) -> None:
    async with ApiClient(socket) as client:
        for _ in range(count):
            await client.call("sale.commit", {"sale": sale()})


async def devices_ready(socket: str) -> None:
    """Until every device of the till says ready (the sims come up after READY=1)."""
    async with ApiClient(socket) as client, asyncio.timeout(RUN_TIMEOUT_S):
        while True:
            status = await client.call("status")
            if all(d["state"] == "ready" for d in status["devices"].values()):
                return
            await asyncio.sleep(0.05)


@dataclass
class Till:
    daemon: DaemonProcess
    broker: Mosquitto
    paper: Path  # the simulated printer writes each receipt here as NNNN.txt and NNNN.png

    @property
    def config(self) -> str:
        return str(self.daemon.config)


@pytest.fixture(scope="module")
def till(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Till]:
    workdir = tmp_path_factory.mktemp("till")
    broker = Mosquitto(workdir)
    broker.start()
    paper = workdir / "paper"
    daemon = DaemonProcess(workdir, uplink=uplink_section(broker.port))
    with daemon.config.open("a") as config:
        config.write(SIM_DEVICES.format(paper=paper))
    daemon.start()
    try:
        asyncio.run(devices_ready(daemon.socket))
        asyncio.run(commit(daemon.socket, SALES))
        yield Till(daemon, broker, paper)
    finally:
        daemon.terminate()
        broker.stop()


def test_status_shows_link_backlog_devices_and_journal(till: Till) -> None:
    human = edgectl("--config", till.config, "status")
    assert human.returncode == 0, human.stderr
    rows = dict(line.split(None, 1) for line in human.stdout.splitlines() if " " in line)
    assert rows["terminal"].strip() == "S1 / T1"
    assert len(rows["key"].strip()) == 64  # the terminal's public signing key, hex
    assert rows["collector-key"].strip() == "not pinned yet"  # no collector runs here
    assert "device printer  ready" in human.stdout
    assert "device scanner  ready" in human.stdout
    assert "device payment  ready" in human.stdout
    assert f"journal         {till.daemon.journal} (" in human.stdout
    assert "oldest pending" in human.stdout
    machine = edgectl("status", "--config", till.config, "--json")
    assert machine.returncode == 0, machine.stderr
    status = json.loads(machine.stdout)
    assert status["journal"]["last_seq"] >= SALES
    assert status["journal"]["file_bytes"] > 0
    assert status["outbox"]["pending"] == status["journal"]["last_seq"]  # nobody acks
    assert set(status["devices"]) == {"printer", "scanner", "payment"}
    assert status["version"]


def test_doctor_passes_on_a_good_setup(till: Till) -> None:
    run = edgectl("--config", till.config, "doctor")
    assert run.returncode == 0, run.stdout + run.stderr
    *lines, verdict = run.stdout.splitlines()
    assert verdict.startswith("no check failed")
    names = [line.split()[1] for line in lines]
    for name in ("config", "socket", "journal", "printer", "scanner", "payment", "disk", "clock"):
        assert name in names, run.stdout
    assert any(line.startswith("OK    broker mqtt") for line in lines), run.stdout
    assert all(line.split()[0] in ("OK", "WARN") for line in lines), run.stdout
    report = json.loads(edgectl("--config", till.config, "doctor", "--json").stdout)
    assert report["ok"] is True
    assert {c["level"] for c in report["checks"]} <= {"OK", "WARN"}


def test_doctor_fails_on_a_missing_device_node(till: Till, tmp_path: Path) -> None:
    missing = tmp_path / "scanner-not-plugged-in"
    broken = tmp_path / "edged.toml"
    broken.write_text(
        Path(till.config)
        .read_text()
        .replace(
            '[devices.scanner]\ndriver = "sim"',
            f'[devices.scanner]\ndriver = "serial"\npath = "{missing}"',
        )
    )
    run = edgectl("doctor", "--config", str(broken))
    assert run.returncode == 1, run.stdout + run.stderr
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  scanner")
    assert f"{missing} does not exist" in line
    assert "udev" in line  # says what to do
    report = json.loads(edgectl("doctor", "--config", str(broken), "--json").stdout)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if c["level"] == "FAIL"] == ["scanner"]


def _receipt_files(paper: Path) -> set[Path]:
    return set(paper.glob("*.txt")) if paper.is_dir() else set()


def test_diag_printer_prints_a_test_page(till: Till) -> None:
    before = _receipt_files(till.paper)
    run = edgectl("--config", till.config, "diag", "printer", "--test-page")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "printer           ready" in run.stdout
    assert "printed" in run.stdout
    (page,) = _receipt_files(till.paper) - before
    text = page.read_text()
    assert "edgectl test page" in text
    assert "code page test: € äöü ß" in text  # CP858 has all of them: no "?"
    assert "S1 / T1" in text
    ruler = next(line for line in text.splitlines() if line.startswith("....+"))
    assert ruler.endswith("....4..")  # exactly 42 columns on one line
    status = json.loads(edgectl("--config", till.config, "diag", "printer", "--json").stdout)
    assert status["printer"]["state"] == "ready"


def test_diag_drawer_reports_the_sensor(till: Till) -> None:
    run = edgectl("--config", till.config, "diag", "drawer")
    assert run.returncode == 0, run.stderr
    assert "the sensor saw it open" in run.stdout
    result = json.loads(edgectl("--config", till.config, "diag", "drawer", "--json").stdout)
    assert result["drawer_open"] is True


async def _watch(till: Till, codes: list[tuple[str, str]], *extra: str) -> tuple[int, str]:
    """Run `diag scanner --watch` and make the sim scanner scan `codes` once it watches."""
    proc = await asyncio.create_subprocess_exec(
        EDGECTL,
        "--config",
        till.config,
        "diag",
        "scanner",
        "--watch",
        str(RUN_TIMEOUT_S),
        "--count",
        str(len(codes)),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            first = await proc.stdout.readline()  # printed once it is subscribed
            async with ApiClient(till.daemon.socket) as client:
                for code, symbology in codes:
                    await client.call("sim.scan", {"code": code, "symbology": symbology})
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, (first + rest).decode()


async def test_diag_scanner_shows_scans_live(till: Till) -> None:
    gs1 = "0104006381333931\x1d10LOT7"
    status, out = await _watch(till, [("4006381333931", "]E0"), (gs1, "]C1")])
    assert status == 0, out
    lines = out.splitlines()
    assert "watching" in lines[0]
    assert lines[1].split() == ["ean-13", "valid", "4006381333931"]
    assert lines[2].split()[:3] == ["gs1-128", "valid", "0104006381333931<GS>10LOT7"]
    assert "(01)04006381333931 (10)LOT7" in lines[2]

    status, out = await _watch(till, [("HELLO-TECH", "]Q1")], "--json")
    assert status == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["watching", "scan"]
    assert events[1]["data"]["code"] == "HELLO-TECH"
    assert events[1]["data"]["symbology"] == "qr"


def test_diag_payment_ping(till: Till) -> None:
    run = edgectl("--config", till.config, "diag", "payment", "--ping")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("payment terminal: ready")
    result = json.loads(
        edgectl("--config", till.config, "diag", "payment", "--ping", "--json").stdout
    )
    assert result["payment"]["state"] == "ready"


def test_outbox_lists_pending_sales_oldest_first(till: Till) -> None:
    run = edgectl("--config", till.config, "outbox", "--json")
    assert run.returncode == 0, run.stderr
    outbox = json.loads(run.stdout)
    assert outbox["acked_upto"] == 0
    assert [e["seq"] for e in outbox["entries"]] == list(range(1, outbox["pending"] + 1))
    # This till never reached a store: its receipt numbers are provisional (-P...), see adoption
    assert outbox["entries"][0]["receipt_no"].startswith("S1-T1-000001-P")
    limited = json.loads(
        edgectl("--config", till.config, "outbox", "--limit", "2", "--json").stdout
    )
    assert [e["seq"] for e in limited["entries"]] == [1, 2]
    human = edgectl("--config", till.config, "outbox", "--limit", "2")
    assert "pending (acknowledged up to seq 0), the oldest 2 shown" in human.stdout
    assert "S1-T1-000002" in human.stdout
    assert "12.50 EUR" in human.stdout


class _Exported(msgspec.Struct):
    seq: int
    id: str
    receipt_no: str
    created_at: str
    prev_hash: str
    hash: str
    sale: msgspec.Raw
    acked: bool


def test_journal_export_writes_verifiable_json_lines(till: Till, tmp_path: Path) -> None:
    run = edgectl("--config", till.config, "journal", "export", "--from", "2", "--to", "3")
    assert run.returncode == 0, run.stderr
    lines = [msgspec.json.decode(line, type=_Exported) for line in run.stdout.splitlines()]
    assert [e.seq for e in lines] == [2, 3]
    assert lines[1].prev_hash == lines[0].hash
    for e in lines:  # the sale is exported byte for byte: support can recompute the chain
        body = entry_bytes(e.seq, e.id, e.receipt_no, e.created_at, bytes(e.sale))
        assert entry_hash(bytes.fromhex(e.prev_hash), body).hex() == e.hash
        assert json.loads(bytes(e.sale))["total"] == 1250
    out = tmp_path / "export.jsonl"
    to_file = edgectl("--config", till.config, "journal", "export", "--out", str(out), "--json")
    assert to_file.returncode == 0, to_file.stderr
    summary = json.loads(to_file.stdout)
    assert summary["entries"] == len(out.read_text().splitlines()) >= SALES
    beyond = edgectl("--config", till.config, "journal", "export", "--from", "1", "--to", "999")
    assert beyond.returncode == 1
    assert "do not exist yet" in beyond.stderr
    verify = json.loads(edgectl("--config", till.config, "journal", "verify", "--json").stdout)
    assert verify["ok"] is True


def test_receipt_renders_what_the_printer_prints(till: Till, tmp_path: Path) -> None:
    export = edgectl("--config", till.config, "journal", "export", "--from", "2", "--to", "2")
    sale_id = json.loads(export.stdout)["id"]
    before = _receipt_files(till.paper)
    asyncio.run(_print_by_id(till.daemon.socket, sale_id))
    (printed,) = _receipt_files(till.paper) - before

    png = tmp_path / "receipt-2.png"
    run = edgectl("--config", till.config, "receipt", "2", "--png", str(png), "--text")
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed.read_text()  # line for line what came out of the printer
    assert png.read_bytes() == printed.with_suffix(".png").read_bytes()
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.height > image.width
    assert "S1-T1-000002" in run.stdout
    assert "TOTAL" in run.stdout

    meta = json.loads(
        edgectl("--config", till.config, "receipt", "1", "--png", str(png), "--json").stdout
    )
    assert meta["receipt_no"].startswith("S1-T1-000001")
    assert meta == {"seq": 1, "receipt_no": meta["receipt_no"], "png": str(png), "text": None}
    missing = edgectl("--config", till.config, "receipt", "999", "--text")
    assert missing.returncode == 2
    assert "no entry with seq 999" in missing.stderr


async def _print_by_id(socket: str, sale_id: str) -> None:
    async with ApiClient(socket) as client:
        result = await client.call("printer.print", {"sale_id": sale_id, "wait_s": 30})
    assert result["state"] == "printed", result


def test_sync_times_out_without_a_collector(till: Till) -> None:
    run = edgectl("--config", till.config, "sync", "--timeout", "1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "still pending" in run.stderr
    assert "sent" in run.stdout  # the progress line, one per update when not on a terminal


def test_sync_drains_the_backlog(tmp_path: Path, broker: Mosquitto) -> None:
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink_section(broker.port))
    daemon.start()
    collector = CollectorProcess(tmp_path / "store", uplink_section(broker.port))
    try:
        asyncio.run(commit(daemon.socket, 5))
        collector.start()
        run = edgectl("--config", str(daemon.config), "sync", "--timeout", str(RUN_TIMEOUT_S))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "nothing pending" in run.stdout
        done = json.loads(edgectl("--config", str(daemon.config), "sync", "--json").stdout)
        assert done["drained"] is True
        assert done["acked_upto"] == 5
    finally:
        collector.terminate()
        daemon.terminate()


async def daemon_status(socket: str) -> dict[str, Any]:
    async with ApiClient(socket) as client:
        status: dict[str, Any] = await client.call("status")
    return status


async def acked(socket: str, seq: int) -> None:
    """Until the daemon's outbox is acknowledged up to `seq`."""
    await until_awaited(
        lambda: _acked_past(socket, seq), f"acked up to {seq}", timeout_s=RUN_TIMEOUT_S
    )


async def _acked_past(socket: str, seq: int) -> bool:
    return bool((await daemon_status(socket))["outbox"]["acked_upto"] >= seq)


def purged_upto(journal: str) -> int:
    """The journal's purge anchor: every entry up to it is deleted."""
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        ((anchor,),) = conn.execute("SELECT anchor_seq FROM outbox")
    return int(anchor)


def copy_db(src: str, dst: str) -> None:
    """A SQLite file and its -wal/-shm, as a backup or its restore copies them."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
        if Path(f"{src}{suffix}").exists():
            shutil.copy2(f"{src}{suffix}", f"{dst}{suffix}")


async def test_status_and_outbox_show_the_stores_permanent_gap(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The store, restored from an old copy, lacks seqs 31..70, which the till purged (kept 0
    days): the technician sees the permanent gap in `edgectl status` and `edgectl outbox`, and
    no longer once a store admin accepted it. test_resend.py makes the same gap in-process;
    here the daemon and the collector are the real processes."""
    uplink = uplink_section(broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink)
    # Nothing acknowledged is kept; a new terminal id: no adoption wait.
    settings = "[journal]\nretain_days = 0\nadopt = false\n"
    daemon.config.write_text(daemon.config.read_text().replace("[journal]\n", settings))
    collector = CollectorProcess(tmp_path / "store", uplink)
    backup = str(tmp_path / "backup.db")
    config = str(daemon.config)
    daemon.start()
    collector.start()
    try:
        await commit(daemon.socket, 30)
        await acked(daemon.socket, 30)
        collector.terminate()
        copy_db(collector.db, backup)
        collector.start()
        await commit(daemon.socket, 40)
        await acked(daemon.socket, 70)
        collector.terminate()
        daemon.terminate()
        daemon.start()  # the retention runs at start: every acknowledged entry goes
        await until(lambda: purged_upto(daemon.journal) == 70, "purged", timeout_s=RUN_TIMEOUT_S)
        copy_db(backup, collector.db)
        collector.start()
        await commit(daemon.socket, 5)  # 71..75: the store, back at 30, asks for 31..70: purged

        async def gap_at_the_till() -> bool:
            return bool((await daemon_status(daemon.socket))["link"]["store_permanent_gap"])

        await until_awaited(gap_at_the_till, "the till told", timeout_s=RUN_TIMEOUT_S)
        status = edgectl("--config", config, "status")
        assert status.returncode == 0, status.stderr
        assert "store gap       seqs 31..70 purged here: the store must accept" in status.stdout
        outbox = edgectl("--config", config, "outbox")
        assert outbox.returncode == 0, outbox.stderr
        assert outbox.stdout.startswith(
            "the store lacks seqs 31..70, purged here: a permanent gap; sales stay pending "
            "until a store admin accepts it (edged collector ... accept-gap)\n"
            "5 pending (acknowledged up to seq 70)\n"
        )
        machine = json.loads(edgectl("--config", config, "outbox", "--json").stdout)
        assert (machine["store_permanent_gap"], machine["pending"]) == ([31, 70], 5)

        admin = [sys.executable, "-m", "edged.cli", "collector", "--config", str(collector.config)]
        done = subprocess.run(
            [*admin, "accept-gap", "S1", "T1", "31", "70", "--by", "alice"],
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await acked(daemon.socket, 75)
        assert "store gap" not in edgectl("--config", config, "status").stdout
        after = edgectl("--config", config, "outbox").stdout
        assert after == "outbox empty: every sale up to seq 75 is acknowledged by the store\n"
    finally:
        collector.terminate()
        daemon.terminate()


def test_cannot_run_exits_2(tmp_path: Path) -> None:
    gone = edgectl("status", "--socket", str(tmp_path / "nothing.sock"))
    assert gone.returncode == 2
    assert "is edged running" in gone.stderr
    no_journalctl = edgectl("logs", env={"PATH": str(tmp_path)})
    assert no_journalctl.returncode == 2
    assert "journalctl is not installed" in no_journalctl.stderr
    usage = edgectl("receipt", "1")
    assert usage.returncode == 2
    assert "--png FILE and/or --text" in usage.stderr


def test_doctor_checks_the_broker_step_by_step(tmp_path: Path) -> None:
    """TLS with the configured CA and client certificate, then MQTT CONNECT with the password."""
    make_tls_users(tmp_path)
    tls_port, legacy_port = free_port(), free_port()
    broker = Mosquitto(
        tmp_path,
        extra_conf=(
            f"password_file {tmp_path / 'passwd'}\n"
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {tmp_path / 'good-ca.crt'}\n"
            f"certfile {tmp_path / 'good-server.crt'}\n"
            f"keyfile {tmp_path / 'good-server.key'}\n"
            "require_certificate true\n"
            # a broker certificate from a home-made CA without keyUsage
            f"listener {legacy_port} 127.0.0.1\n"
            f"cafile {tmp_path / 'good-ca.crt'}\n"
            f"certfile {tmp_path / 'legacy-server.crt'}\n"
            f"keyfile {tmp_path / 'legacy-server.key'}\n"
            "require_certificate true\n"
        ),
    )

    def doctor(ca: str, password: str, port: int = tls_port) -> dict[str, dict[str, str]]:
        config = tmp_path / "edged.toml"
        config.write_text(
            '[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n'
            f'[journal]\npath = "{tmp_path / "journal.db"}"\n'
            f'[api]\nsocket = "{tmp_path / "edged.sock"}"\n'
            f'[uplink]\nhost = "127.0.0.1"\nport = {port}\ntls = true\nca_file = "{ca}"\n'
            'cert_file = "good-client.crt"\nkey_file = "good-client.key"\n'
            f'username = "s1-t1"\npassword_file = "{password}"\n'
        )
        run = edgectl("doctor", "--config", str(config), "--json")
        assert run.returncode == 1, run.stdout + run.stderr  # no daemon, no journal here
        return {c["name"]: c for c in json.loads(run.stdout)["checks"]}

    broker.start()
    try:
        good = doctor("good-ca.crt", "s1-t1.pw")
        # verified; the test certificates expire in two days, which is worth a WARN
        assert good["broker tls"]["level"] == "WARN", good["broker tls"]
        assert "certificate verified" in good["broker tls"]["found"]
        assert good["broker tls"]["todo"] == "renew it in time"
        assert good["broker mqtt"]["level"] == "OK", good["broker mqtt"]
        assert "as user s1-t1 accepted" in good["broker mqtt"]["found"]
        assert good["socket"]["level"] == "FAIL"

        untrusted = doctor("other-ca.crt", "s1-t1.pw")
        assert untrusted["broker tcp"]["level"] == "OK"
        assert untrusted["broker tls"]["level"] == "FAIL"
        assert "ca_file" in untrusted["broker tls"]["todo"]
        assert "broker mqtt" not in untrusted

        # strict verification on every Python: the hint names the missing extension
        legacy = doctor("legacy-ca.crt", "s1-t1.pw", port=legacy_port)
        assert legacy["broker tls"]["level"] == "FAIL"
        assert "key usage" in legacy["broker tls"]["found"], legacy["broker tls"]
        assert "keyUsage extension (keyCertSign, cRLSign)" in legacy["broker tls"]["todo"]
        assert "README's TLS recipe" in legacy["broker tls"]["todo"]

        wrong_password = doctor("good-ca.crt", "wrong.pw")
        assert wrong_password["broker tls"]["level"] == "WARN"  # verified, expiring soon
        assert wrong_password["broker mqtt"]["level"] == "FAIL"
        assert "password_file" in wrong_password["broker mqtt"]["todo"]
    finally:
        broker.stop()


async def test_sync_against_a_daemon_that_never_answers_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung or starved daemon accepts the connection and answers nothing: sync must not
    wait in silence."""
    from edged.ctl import sync as sync_cmd
    from edged.ctl.errors import CtlError

    monkeypatch.setattr(sync_cmd, "SETUP_TIMEOUT_S", 0.2)
    path = str(tmp_path / "mute.sock")
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_unix_server(lambda r, w: accepted.append(w), path=path)
    try:
        with pytest.raises(CtlError, match="did not answer .* within 0.2 s: it is hung"):
            await asyncio.wait_for(sync_cmd._sync(path, 1.0, None), 20)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_diag_on_absent_devices_says_so_at_once(tmp_path: Path) -> None:
    """No test page queued for an absent printer (it would print days later), no watching an
    absent scanner for the whole --watch, and `diag payment` pings without --ping."""
    daemon = DaemonProcess(tmp_path)
    with daemon.config.open("a") as config:
        config.write(
            f'[devices.printer]\npath = "{tmp_path}/no-printer"\n'
            f'[devices.scanner]\npath = "{tmp_path}/no-scanner"\n'
            f'[devices.payment]\npath = "{tmp_path}/no-terminal"\n'
        )
    daemon.start()
    try:
        page = edgectl("--config", str(daemon.config), "diag", "printer", "--test-page")
        assert page.returncode == 1, page.stdout + page.stderr
        assert "the printer is absent" in page.stderr
        assert "no test page was sent" in page.stderr
        status = json.loads(
            edgectl("--config", str(daemon.config), "diag", "printer", "--json").stdout
        )
        assert status["printer"]["queued"] == 0
        assert status["test_page"] is None
        started = time.monotonic()
        watch = edgectl("--config", str(daemon.config), "diag", "scanner", "--watch", "600")
        assert watch.returncode == 1, watch.stdout + watch.stderr
        assert "the scanner is absent" in watch.stderr
        assert time.monotonic() - started < RUN_TIMEOUT_S  # not the whole --watch
        ping = edgectl("--config", str(daemon.config), "diag", "payment")
        assert ping.returncode == 1, ping.stderr
        assert ping.stdout.startswith("payment terminal: absent")
    finally:
        daemon.terminate()
