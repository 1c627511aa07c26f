"""Card payments approved offline by the terminal, taken while the store link is down.

The real daemon drives a ZVT simulator (run here, in the test) over a pty, as it drives a real
terminal; mosquitto is killed first. The payment must go through, its record and the sale
say `offline`, `status` counts it across a restart, and the collector lists it to follow up.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.client import ApiClient
from edged.collector import collector_report
from edged.sim.zvt import SimZvtTerminal
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until_awaited

CARD_KEYS = ("masked_pan", "card_name", "auth_code", "trace_number", "terminal_id")


@contextlib.asynccontextmanager
async def zvt_sim(link: Path) -> AsyncIterator[SimZvtTerminal]:
    sim = SimZvtTerminal()
    served = asyncio.create_task(sim.run_pty(link), name="zvt-sim")
    try:
        async with asyncio.timeout(20):
            await sim.wait_online()
        yield sim
    finally:
        served.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served


async def pay(client: ApiClient, payment_id: str, amount: int) -> dict[str, Any]:
    await client.call("payment.start", {"id": payment_id, "amount": amount, "currency": "EUR"})
    found: dict[str, Any] = {}

    async def settled() -> bool:
        found.update(await client.call("payment.get", {"id": payment_id}))
        return found["state"] != "in_progress"

    await until_awaited(settled, f"payment {payment_id} settled")
    return found


def card_sale(payment: dict[str, Any]) -> dict[str, Any]:
    """The sale as the README tells a UI to build it from the payment's record."""
    result = payment["result"]
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": result["amount"],
        "lines": [{"sku": "4006381333931", "qty": 1, "amount": result["amount"]}],
        "payments": [
            {
                "method": "card",
                "amount": result["amount"],
                "payment_id": payment["id"],
                "authorisation": result["authorisation"],
                "card": {k: result[k] for k in CARD_KEYS},
            }
        ],
    }


async def offline_status(client: ApiClient) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def loaded() -> bool:
        found.update((await client.call("status"))["payments"]["offline_approved"] or {})
        return bool(found)

    await until_awaited(loaded, "the offline tally read from the journal")
    return found


EDGECTL = str(Path(sys.executable).with_name("edgectl"))


async def test_offline_card_payment_while_the_store_link_is_down(
    tmp_path: Path, broker: Mosquitto
) -> None:
    async with zvt_sim(tmp_path / "payment") as sim:
        daemon = DaemonProcess(tmp_path / "till", uplink=uplink_section(broker.port))
        with daemon.config.open("a") as config:
            config.write(f'[devices.payment]\ndriver = "zvt"\npath = "{tmp_path / "payment"}"\n')
        broker.stop()  # the store link is down before the till even starts
        collector = CollectorProcess(tmp_path / "store", uplink_section(broker.port))
        await asyncio.to_thread(daemon.start)
        try:
            async with ApiClient(daemon.socket) as client:

                async def ready() -> bool:
                    status = await client.call("status")
                    return bool(status["devices"]["payment"]["state"] == "ready")

                await until_awaited(ready, "the payment terminal registered")
                assert (await client.call("status"))["link"]["state"] != "online"
                sim.approve_offline_next()
                offline = await pay(client, "pay-offline", 1250)
                online = await pay(client, "pay-online", 300)
                assert (offline["state"], online["state"]) == ("approved", "approved")
                assert offline["result"]["authorisation"] == "offline"
                assert online["result"]["authorisation"] == "online"
                for payment in (offline, online):
                    await client.call("sale.commit", {"sale": card_sale(payment)})
                tally = await offline_status(client)
                assert (tally["count"], tally["total"], tally["currency"]) == (1, 1250, "EUR")
                sale = (await client.call("status"))["journal"]["last_seq"]
                assert sale == 2
            assert daemon.terminate() == 0
            await asyncio.to_thread(daemon.start)  # the tally is read back from the journal
            async with ApiClient(daemon.socket) as client:
                assert await offline_status(client) == tally
            shown = subprocess.run(
                [EDGECTL, "status", "--socket", str(daemon.socket)],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            assert "1 approved offline, 12.50 EUR, since" in shown
            broker.start()
            await asyncio.to_thread(collector.start)

            async def listed() -> bool:
                try:
                    report = collector_report(f"sqlite:///{collector.db}")
                except Exception:
                    return False
                return bool(report["transactions"] == 2)

            await until_awaited(listed, "both sales at the store")
            follow_up = collector_report(f"sqlite:///{collector.db}")["offline_payments"]
            assert (follow_up["count"], follow_up["total_by_currency"]) == (1, {"EUR": 1250})
            (listed_payment,) = follow_up["payments"]
            assert listed_payment["payment_id"] == "pay-offline"
            assert (listed_payment["amount"], listed_payment["terminal_id"]) == (1250, "T1")
            assert listed_payment["seq"] == 1 and listed_payment["store_id"] == "S1"
            assert listed_payment["card"]["masked_pan"].endswith("0019")
        finally:
            if collector.running:
                collector.terminate()
            if daemon.running:
                daemon.terminate()
