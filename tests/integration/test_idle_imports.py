"""A terminal without devices does not load the device stacks (issue 13: idle RSS).

Each of them costs the idle daemon memory for good once imported (python-escpos, Pillow,
qrcode and python-barcode alone about 10 MiB), so the device manager imports a driver only
when its section is configured, and nothing else of the daemon may pull one in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

# Runs the real daemon (`edged.daemon.run`) until its API answers, then prints sys.modules.
SCRIPT = """
import asyncio, json, os, signal, sys
from edged.client import ApiClient
from edged.config import load_config
from edged.daemon import run

async def main(config, sock):
    daemon = asyncio.create_task(run(load_config(config)))
    for _ in range(400):
        try:
            async with ApiClient(sock) as client:
                await client.call("status")
            break
        except OSError:
            await asyncio.sleep(0.05)
    print("MODULES", json.dumps(sorted(sys.modules)), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    await daemon

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

DEVICE_STACKS = ("escpos", "PIL", "qrcode", "barcode", "serial", "serial_asyncio_fast", "evdev")
NEVER_IN_THE_DAEMON = (
    "usb",
    "cryptography",  # Ed25519 is PyNaCl's (edged.signing)
    "edged.sim",
    "edged.ctl",
    "edged.collector",
    "edged.devices.printer.driver",
    "edged.devices.scanner",
    "edged.devices.payment",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_terminal_without_devices_loads_no_device_stack(tmp_path: Path) -> None:
    sock = tmp_path / "edged.sock"
    config = tmp_path / "edged.toml"
    config.write_text(  # an uplink to a port nobody listens on: its code is loaded, it waits
        f'[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n'
        f'[journal]\npath = "{tmp_path / "journal.db"}"\n[api]\nsocket = "{sock}"\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    )
    # as under systemd: without the pickle folder tests/conftest.py sets for python-escpos
    environment = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    environment["EDGED_LOG_LEVEL"] = "warning"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), str(sock)],
        capture_output=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    (line,) = [x for x in done.stdout.decode().splitlines() if x.startswith("MODULES ")]
    modules = set(json.loads(line.removeprefix("MODULES ")))
    assert "edged.daemon" in modules and "edged.uplink.client" in modules
    loaded = sorted(
        name
        for name in modules
        if any(
            name == top or name.startswith(top + ".") for top in DEVICE_STACKS + NEVER_IN_THE_DAEMON
        )
    )
    assert loaded == []
