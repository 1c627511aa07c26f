"""`edgectl bundle` from a real daemon that took card payments: every file of the archive is
searched for the sales, the card numbers and the passwords, and none is there."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from edged.client import ApiClient
from edged.sim.zvt import TEST_PAN
from tests.integration.test_devices_daemon import DEVICES, all_ready, card_sale, paid
from tests.support.daemon import DaemonProcess, uplink_section
from tests.support.ports import free_port

BROKER_PASSWORD = "broker-pw-Zq81"
ZVT_PASSWORD = "314159"
LINE_NAME = "Pencil HB"  # card_sale's line


def edgectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys, edged.ctl; sys.exit(edged.ctl.main())", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit() or ch == "\n")


async def test_bundle_holds_no_sale_no_card_number_no_password(tmp_path: Path) -> None:
    password_file = tmp_path / "broker.password"
    password_file.write_text(BROKER_PASSWORD + "\n")
    password_file.chmod(0o600)
    uplink = uplink_section(
        free_port(), username="s1-t1", password_file=str(password_file)
    )  # nothing listens: the link stays down, the sales pending
    daemon = DaemonProcess(tmp_path / "terminal", uplink=uplink)
    with daemon.config.open("a") as config:
        config.write(DEVICES.format(receipts=tmp_path / "receipts"))
        config.write(f'password = "{ZVT_PASSWORD}"\n')  # the last section: [devices.payment]
    daemon.start()
    sales = []
    try:
        async with ApiClient(daemon.socket) as client:
            await all_ready(client)
            await client.call("subscribe", {"events": ["payment"]})
            for n in range(3):
                sale = card_sale(await paid(client, f"pay-{n}", 100 + n))
                await client.call("sale.commit", {"sale": sale})
                sales.append(sale)
        out = tmp_path / "support.tar.gz"
        made = edgectl(
            "bundle", "--config", str(daemon.config), "--out", str(out),
            "--log-file", str(daemon.log), "-n", "1000",
        )  # fmt: skip
    finally:
        daemon.terminate()
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    with tarfile.open(out) as tar:
        texts = {
            Path(m.name).name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }
    assert set(texts) == {
        "README.txt", "version.json", "config.json", "files.json", "status.json",
        "doctor.json", "journal.json", "devices.json", "log.txt",
    }  # fmt: skip
    masked = {s["payments"][0]["card"]["masked_pan"] for s in sales}
    secrets = [BROKER_PASSWORD, ZVT_PASSWORD, LINE_NAME, *masked, *(s["id"] for s in sales)]
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, (name, secret)
        assert TEST_PAN not in digits(text), name
    assert not re.search(r"\d{12}", texts["log.txt"])  # masked as edged's own log does
    # ... and what support needs is there.
    assert "sale_committed" in texts["log.txt"]
    assert json.loads(texts["status.json"])["outbox"]["pending"] == 3
    journal = json.loads(texts["journal.json"])
    assert (journal["pending"], journal["verify"]["ok"]) == (3, True)
    shown = json.loads(texts["config.json"])["config"]
    assert shown["terminal"]["store_id"] == "S1"
    assert shown["devices"]["payment"]["password"] == "(hidden)"
    assert shown["uplink"]["password_file"] == str(password_file)
    assert {c["name"] for c in json.loads(texts["doctor.json"])["checks"]} >= {"config", "journal"}
    assert json.loads(texts["devices.json"])["devices"]["payment"]["state"] == "ready"
    assert {"mode": "0600", "path": str(password_file)}.items() <= next(
        f for f in json.loads(texts["files.json"]) if f["path"] == str(password_file)
    ).items()
