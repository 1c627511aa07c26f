"""`driver = "sim"` is decided by the wiring: the device layer only ever sees real settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edged.config import DevicesSection, load_config
from edged.devices.manager import Devices
from edged.journal import Journal
from edged.records import Payments, PrintJobs
from edged.simwiring import Simulators

TERMINAL = '[terminal]\nstore_id = "s1"\nterminal_id = "t1"\n'
SIMULATED = """
[devices.printer]
driver = "sim"
header = ["edged test store"]
[devices.scanner]
driver = "sim"
suffix = "\\n"
[devices.payment]
driver = "sim"
simulate = "concert"
connection = "tcp"
"""
REAL = """
[devices.printer]
connection = "network"
host = "127.0.0.1"
[devices.scanner]
path = "/dev/ttyUSB7"
[devices.payment]
connection = "tcp"
host = "127.0.0.1"
"""


def devices(tmp_path: Path, text: str) -> DevicesSection:
    path = tmp_path / "edged.toml"
    path.write_text(TERMINAL + text)
    return load_config(path).devices


def test_simulated_devices_reach_the_device_layer_as_serial_devices_on_ptys(
    tmp_path: Path,
) -> None:
    configured = devices(tmp_path, SIMULATED)
    wired = Simulators(configured, tmp_path / "sim").devices
    assert wired.printer is not None and configured.printer is not None
    assert (wired.printer.driver, wired.printer.connection, wired.printer.path) == (
        "escpos",
        "serial",
        str(tmp_path / "sim" / "printer"),
    )
    assert wired.printer.header == ["edged test store"]
    assert wired.scanner is not None
    assert (wired.scanner.driver, wired.scanner.path, wired.scanner.suffix) == (
        "serial",
        str(tmp_path / "sim" / "scanner"),
        "\n",
    )
    assert wired.payment is not None
    assert (wired.payment.driver, wired.payment.connection, wired.payment.path) == (
        "concert",
        "serial",
        str(tmp_path / "sim" / "payment"),
    )


def test_real_devices_pass_through_the_wiring_unchanged(tmp_path: Path) -> None:
    configured = devices(tmp_path, REAL)
    assert Simulators(configured, tmp_path / "sim").devices == configured
    assert not (tmp_path / "sim").exists()


async def test_the_device_layer_refuses_a_simulator_it_was_not_wired_to(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "journal.db", store_id="s1", terminal_id="t1")
    try:
        with pytest.raises(ValueError, match=r'devices\.printer has driver = "sim"'):
            Devices(
                devices(tmp_path, SIMULATED),
                jobs=PrintJobs(journal),
                ledger=Payments(journal),
                publish=lambda _type, _data: None,
                where=dt.UTC,
            )
    finally:
        await journal.close()
