"""A daemon killed (kill -9, a power cut of the till) in the middle of a receipt.

The printer is another device: the simulator lives in the test process, and the daemon's real
ESC/POS driver reaches it over a pty. Paper runs out half way through the receipt, the daemon
dies, paper comes back — the printer finishes what it had buffered — and the restarted daemon,
which cannot know that, prints the receipt again with COPY on it. Never twice without COPY.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from edged.client import ApiClient
from edged.sim.printer import SimPrinter
from tests.support.daemon import DaemonProcess

HANG_GUARD_S = 30.0


async def test_a_receipt_cut_short_by_a_crash_is_printed_again_as_a_copy(tmp_path: Path) -> None:
    async with SimPrinter.start(tmp_path / "printer") as sim:
        daemon = DaemonProcess(tmp_path / "till")
        with daemon.config.open("a") as config:
            config.write(f'[devices.printer]\npath = "{tmp_path / "printer"}"\npoll_s = 0.2\n')
        daemon.start()
        try:
            sale = {
                "id": str(uuid.uuid4()),
                "currency": "EUR",
                "total": 350,
                "lines": [{"sku": "4006381333931", "name": "Tea", "qty": 1, "amount": 350}],
                "payments": [{"method": "cash", "amount": 350}],
            }
            async with ApiClient(daemon.socket) as client:
                await client.call("sale.commit", {"sale": sale})
                sim.run_out_after(3)  # the roll ends three lines into the receipt
                answer = await client.call("printer.print", {"sale_id": sale["id"], "wait_s": 1})
            assert answer["state"] == "sending"  # the printer holds the rest, waiting for paper
            async with asyncio.timeout(HANG_GUARD_S):
                while sim.paper != "out":
                    await asyncio.sleep(0.05)
            daemon.kill()
            sim.set_paper("ok")  # the printer finishes the receipt it had buffered
            await sim.wait_for_receipts(1, HANG_GUARD_S)
            daemon.start()
            await sim.wait_for_receipts(2, HANG_GUARD_S)
            async with ApiClient(daemon.socket) as client:
                async with asyncio.timeout(HANG_GUARD_S):
                    while (await client.call("printer.status"))["queued"]:
                        await asyncio.sleep(0.05)
        finally:
            daemon.terminate()
        receipts = list(sim.receipts)
    assert len(receipts) == 2
    original, again = receipts
    assert "COPY" not in original.text
    assert "COPY" in again.text
    assert original.complete and again.complete
