"""The demo: ring sales through the socket API, lose the store broker, keep selling, watch the
journal's tail drain by itself when the broker is back, then check the store's copy."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.client import ApiClient
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto

BOLD, DIM, OFF = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
PRODUCTS = [
    ("4006381333931", "Tea, green", 349),
    ("BREAD-RYE", "Rye bread", 289),
    ("4011200296908", "Sparkling water", 79),
    ("BANANA", "Bananas", 199),
]


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{OFF}", flush=True)


def run(*cmd: str) -> None:
    print(f"{DIM}$ {' '.join(cmd)}{OFF}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=False)


def basket(n: int) -> dict[str, Any]:
    lines = []
    for i in range(1 + n % 3):
        sku, name, price = PRODUCTS[(n + i) % len(PRODUCTS)]
        lines.append({"sku": sku, "name": name, "qty": 1, "unit_price": price, "amount": price})
    total = sum(line["amount"] for line in lines)
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": lines,
        "payments": [{"method": "cash" if n % 2 else "card", "amount": total}],
    }


async def ring(client: ApiClient, first: int, count: int) -> None:
    for n in range(first, first + count):
        sale = basket(n)
        t0 = time.perf_counter()
        result = await client.call("sale.commit", {"sale": sale})
        ms = (time.perf_counter() - t0) * 1000
        print(
            f"  sale.commit -> seq {result['seq']:>2}  receipt {result['receipt_no']}  "
            f"{sale['total'] / 100:6.2f} EUR  hash {result['hash'][:12]}…  {ms:5.1f} ms"
        )


async def wait_for(client: ApiClient, what: str, check: Any, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        if not check(await client.call("status")):
            async for event in client.events():
                print(f"  {DIM}event {event['type']}: {event['data']}{OFF}")
                if check(await client.call("status")):
                    break
    print(f"  -> {what}")


def collector_rows(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        (rows, distinct, top) = conn.execute(
            "SELECT count(*), count(DISTINCT seq), max(seq) FROM transactions"
        ).fetchone()
    return rows, distinct, top or 0


async def demo(work: Path) -> None:
    broker = Mosquitto(work)
    broker.start()
    uplink = uplink_section(broker.port, keepalive_s=2, online_after_s=1)
    collector = CollectorProcess(work / "store", uplink)
    daemon = DaemonProcess(work / "till", store="berlin-01", terminal="till-3", uplink=uplink)
    try:
        collector.start()
        say(f"edged, a store collector and a mosquitto broker are running in {work}")
        daemon.start()
        print(f"  config: {daemon.config}\n  journal: {daemon.journal}\n  socket: {daemon.socket}")
        async with ApiClient(daemon.socket) as client:
            await client.call("subscribe", {"events": ["link", "outbox"]})
            await wait_for(client, "the link is up", lambda s: s["link"]["state"] == "online")
            say("A POS UI rings up 4 sales (each returns once it is on disk)")
            await ring(client, 0, 4)
            await wait_for(
                client, "all acknowledged by the store", lambda s: s["outbox"]["pending"] == 0
            )
            run("edgectl", "status", "--socket", daemon.socket)

            say("The store broker dies (SIGKILL). Selling goes on, just as fast")
            broker.stop()
            await ring(client, 4, 5)
            await wait_for(
                client,
                "the link is reported offline; sales wait in the journal",
                lambda s: s["link"]["state"] == "offline",
            )
            run("edgectl", "status", "--socket", daemon.socket)

            say("The broker comes back. Nobody presses anything")
            broker.start()
            await wait_for(
                client,
                "the tail drained by itself, every sale acknowledged",
                lambda s: s["outbox"]["pending"] == 0,
                timeout_s=60,
            )
        rows, distinct, top = collector_rows(Path(collector.db))
        say(
            f"The store has {rows} rows for {distinct} distinct seqs, 1..{top}: none lost, "
            "none twice"
        )
        run("edgectl", "journal", "tail", "--journal", daemon.journal)
        run("edgectl", "journal", "verify", "--journal", daemon.journal)
        say("Stopping (SIGTERM): in-flight work finishes, the journal closes cleanly")
        print(f"  edged exited with status {daemon.terminate()}")
    finally:
        daemon.kill()
        if collector.running:
            collector.terminate()
        broker.stop()


def main() -> None:
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    with tempfile.TemporaryDirectory(prefix="edged-demo-") as tmp:
        asyncio.run(demo(Path(tmp)))
    print(f"\n{BOLD}Done.{OFF} Logs and files were in a temporary folder, now removed.")


if __name__ == "__main__":
    main()
