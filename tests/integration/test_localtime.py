"""Receipts and edgectl in the store's local time; the journal and the API stay UTC."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edged.client import ApiClient
from edged.localtime import local_text
from tests.integration.test_edgectl import SIM_DEVICES, devices_ready, edgectl, sale
from tests.support.daemon import DaemonProcess


@pytest.fixture
def berlin_till(tmp_path: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path / "till")
    text = daemon.config.read_text().replace(
        'terminal_id = "T1"\n', 'terminal_id = "T1"\ntimezone = "Europe/Berlin"\n'
    )
    daemon.config.write_text(text + SIM_DEVICES.format(paper=tmp_path / "paper"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.terminate()


async def commit_and_print(socket: str) -> str:
    """The sale's created_at, once its receipt came out of the simulated printer."""
    await devices_ready(socket)
    async with ApiClient(socket) as client:
        committed = sale()
        await client.call("sale.commit", {"sale": committed})
        printed = await client.call("printer.print", {"sale_id": committed["id"], "wait_s": 30})
        assert printed["state"] == "printed", printed
        created_at: str = (await client.call("sale.get", {"id": committed["id"]}))["created_at"]
    return created_at


def test_receipt_and_edgectl_show_the_stores_time(
    berlin_till: DaemonProcess, tmp_path: Path
) -> None:
    created_at = asyncio.run(commit_and_print(berlin_till.socket))
    assert created_at.endswith("Z")  # the journal and the API stay UTC
    local = local_text(created_at, ZoneInfo("Europe/Berlin"))
    assert local is not None and local.endswith((" CET", " CEST"))
    (paper,) = sorted((tmp_path / "paper").glob("*.txt"))
    printed = paper.read_text()
    assert local in printed and "UTC" not in printed

    config = str(berlin_till.config)
    receipt = edgectl("--config", config, "receipt", "1", "--text")
    assert receipt.returncode == 0, receipt.stderr
    assert receipt.stdout == printed  # edgectl renders what the till printed
    outbox = edgectl("--config", config, "outbox")
    assert local in outbox.stdout, outbox.stdout
    status = edgectl("--config", config, "status")
    (oldest,) = [line for line in status.stdout.splitlines() if line.startswith("oldest pending")]
    assert local in oldest, status.stdout
    tail = edgectl("--config", config, "journal", "tail")
    assert local in tail.stdout and created_at not in tail.stdout, tail.stdout
    assert created_at in edgectl("--config", config, "outbox", "--json").stdout  # UTC for programs

    # Without [terminal] timezone, the system's zone: here TZ.
    bare = tmp_path / "bare.toml"
    bare.write_text(config_without_timezone(berlin_till.config))
    tokyo = edgectl(
        "--config", str(bare), "receipt", "1", "--text", env={**os.environ, "TZ": "Asia/Tokyo"}
    )
    assert tokyo.returncode == 0, tokyo.stderr
    assert local_text(created_at, ZoneInfo("Asia/Tokyo")) in tokyo.stdout  # "... JST"


def config_without_timezone(config: Path) -> str:
    return config.read_text().replace('timezone = "Europe/Berlin"\n', "")
