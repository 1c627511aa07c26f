"""The demo: a whole till on one machine. A scripted POS UI scans, pays by card or cash, commits
and prints; the store broker dies and selling goes on; it comes back and the journal's tail
drains by itself; finally the store's copy is compared with the till's journal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
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
from tests.support.sales import uuid7

BOLD, DIM, OFF = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
PRODUCTS = {
    "4006381333931": ("Tea, green", 349),
    "4011200296908": ("Sparkling water", 79),
    "5449000000996": ("Cola 0.33 l", 129),
    "4001686301265": ("Gummy bears", 119),
}
BASKETS = list(PRODUCTS)
SCAN_PAUSE_S = 0.3
DEVICES = """
[devices.printer]
driver = "sim"
render_dir = "{receipts}"
header = ["Edged Demo Market", "Alexanderplatz 1, Berlin"]
footer = ["Thank you for shopping with us"]
[devices.scanner]
driver = "sim"
double_read_s = 0.2
[devices.payment]
driver = "sim"
"""


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{OFF}", flush=True)


def run(*cmd: str) -> None:
    print(f"{DIM}$ {' '.join(cmd)}{OFF}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=False)


class Till:
    """What a POS UI does, through the socket only."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.rung = 0
        self.store_up = True  # the demo's story: whether the store broker runs

    async def next_event(self, type_: str, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(30):
            async for event in self.client.events():
                data = event["data"]
                if event["type"] == type_ and all(data.get(k) == v for k, v in match.items()):
                    return data
        raise RuntimeError("event stream ended")

    async def scan(self, code: str) -> dict[str, Any]:
        # A cashier takes a moment between items; the same code again within double_read_s
        # would be dropped as a double read of one item.
        await asyncio.sleep(SCAN_PAUSE_S)
        await self.client.call("sim.scan", {"code": code, "symbology": "]E0"})
        scan = await self.next_event("scanner.scan")
        name, price = PRODUCTS[scan["code"]]
        print(f"  Scanned {name}, {price / 100:.2f} EUR")
        return {"sku": scan["code"], "name": name, "qty": 1, "unit_price": price, "amount": price}

    async def pay_card(self, amount: int) -> dict[str, Any]:
        payment_id = f"pay-{uuid.uuid4()}"
        await self.client.call(
            "payment.start", {"id": payment_id, "amount": amount, "currency": "EUR"}
        )
        while True:
            event = await self.next_event("payment", id=payment_id)
            if event["state"] == "in_progress":
                print(f"  Card terminal: {DIM}{event['message']}{OFF}")
                continue
            result = event["result"]
            print(f"  Card payment {event['state']}: {result['card_name']} {result['masked_pan']}")
            card = {
                k: result[k]
                for k in ("masked_pan", "card_name", "auth_code", "trace_number", "terminal_id")
            }
            return {"method": "card", "amount": amount, "card": card}

    async def sell(self, n: int) -> dict[str, Any]:
        lines = [await self.scan(BASKETS[(n + i) % len(BASKETS)]) for i in range(1 + n % 3)]
        total = sum(line["amount"] for line in lines)
        if n % 2:
            payment = {"method": "cash", "amount": total}
            drawer = await self.client.call("drawer.open")
            print(
                f"  Paid {total / 100:.2f} EUR cash; the cash drawer opened (pin {drawer['pin']})"
            )
        else:
            payment = await self.pay_card(total)
        sale = {
            "id": uuid7(),  # time-ordered: cheap in the store's index (README)
            "currency": "EUR",
            "total": total,
            "lines": lines,
            "payments": [payment],
        }
        t0 = time.perf_counter()
        result = await self.client.call("sale.commit", {"sale": sale})
        ms = (time.perf_counter() - t0) * 1000
        printed = await self.client.call("printer.print", {"sale_id": sale["id"]})
        self.rung += 1
        where = "sent to the store" if self.store_up else "kept on the till until the store is back"
        print(
            f"  Sale {result['seq']} saved (receipt {result['receipt_no']}, {total / 100:.2f} "
            f"EUR, in {ms:.0f} ms), {where}; receipt {printed['state']}"
        )
        return result

    async def wait_status(self, what: str, check: Any, timeout_s: float = 60.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not check(await self.client.call("status")):
                await asyncio.sleep(0.1)
        print(f"  {what}")


def store_seqs(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM transactions ORDER BY seq")]


async def demo(work: Path, keep_running: bool) -> None:
    broker = Mosquitto(work)
    uplink = uplink_section(broker.port, keepalive_s=2, online_after_s=1)
    collector = CollectorProcess(work / "store", uplink)
    daemon = DaemonProcess(work / "till", store="berlin-01", terminal="till-3", uplink=uplink)
    receipts = work / "receipts"
    with daemon.config.open("a") as config:
        config.write(DEVICES.format(receipts=receipts))
    try:
        broker.start()
        collector.start()
        daemon.start()
        say(f"A broker, the store collector and a till are running in {work}")
        print(f"  till config {daemon.config}: simulated printer, scanner and ZVT terminal")
        async with ApiClient(daemon.socket) as client:
            till = Till(client)
            await client.call("subscribe", {"events": ["scanner.scan", "payment"]})
            await till.wait_status(
                "The till is connected to the store; printer, scanner and card terminal ready",
                lambda s: (
                    s["link"]["state"] == "online"
                    # a new journal first learns whether the store knows this till (adoption)
                    and s["journal"]["adoption"] is None
                    and {d["state"] for d in s["devices"].values()} == {"ready"}
                ),
            )
            say("The POS UI scans, takes card or cash, commits, prints")
            for n in range(3):
                await till.sell(n)
            await till.wait_status(
                "The store has every sale", lambda s: s["outbox"]["pending"] == 0
            )

            say("The store broker dies (SIGKILL). Selling goes on, nobody picks a mode")
            broker.stop()
            till.store_up = False
            for n in range(3, 7):
                await till.sell(n)
            await till.wait_status(
                "The till is offline; its sales wait safely in its journal",
                lambda s: s["link"]["state"] == "offline" and s["outbox"]["pending"] > 0,
            )
            run("edgectl", "status", "--socket", daemon.socket)

            say("The broker comes back. Nobody presses anything")
            broker.start()
            till.store_up = True
            # online only once the link has held for online_after_s (no flapping), which a
            # drain of a few sales can beat: wait for both, or the last status says offline
            await till.wait_status(
                "The till is online again and its waiting sales went to the store by "
                "themselves; the store has every sale",
                lambda s: s["link"]["state"] == "online" and s["outbox"]["pending"] == 0,
            )
            rung = till.rung

        seqs = store_seqs(Path(collector.db))
        lost = len(set(range(1, rung + 1)) - set(seqs))
        duplicated = len(seqs) - len(set(seqs))
        say("Summary")
        print(f"  sales rung at the till:   {rung}")
        print(f"  sales stored at the store: {len(set(seqs))}")
        print(f"  lost: {lost}   duplicated: {duplicated}")
        last = sorted(receipts.glob("*.txt"))[-1]
        say(f"The last receipt as the printer printed it ({last.with_suffix('.png')})")
        print("  " + last.read_text().replace("\n", "\n  "))
        run("edgectl", "journal", "verify", "--journal", daemon.journal)
        run("edgectl", "status", "--socket", daemon.socket)
        if keep_running:
            say("Still running (--keep-running); Ctrl-C stops everything")
            print(
                f"  socket  {daemon.socket}\n  journal {daemon.journal}\n"
                f"  store   {collector.db}\n  receipts {receipts}\n"
                f"  try: .venv/bin/edgectl status --socket {daemon.socket}"
            )
            await asyncio.Event().wait()
        say("Stopping (SIGTERM): in-flight work finishes, the journal closes cleanly")
        print(f"  edged exited with status {daemon.terminate()}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        daemon.kill()
        if collector.running:
            collector.terminate()
        broker.stop()


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM does what Ctrl-C does: every process stopped, the temporary folder removed."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the till, store and broker up for exploring (Ctrl-C stops)",
    )
    args = parser.parse_args()
    os.environ.setdefault("EDGED_LOG_LEVEL", "warning")
    if args.keep_running:
        work = Path(tempfile.mkdtemp(prefix="edged-demo-"))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo(work, keep_running=True))
        print(f"\n{BOLD}Done.{OFF} Files are kept in {work}")
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="edged-demo-") as tmp:
            asyncio.run(demo(Path(tmp), keep_running=False))
    except KeyboardInterrupt:
        print(f"\n{BOLD}Stopped.{OFF} Till, store and broker stopped, temporary folder removed.")
        return 130
    print(f"\n{BOLD}Done.{OFF} Logs and files were in a temporary folder, now removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
