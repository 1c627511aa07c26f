"""The daemon with all three simulated devices, driven only through the socket API.

`driver = "sim"` runs the ESC/POS printer, serial scanner and ZVT terminal simulators
in-process on pty pairs, with the real drivers on their real serial code path.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edged.api import codes
from edged.client import ApiClient, ApiError
from edged.sim.zvt import TEST_PAN
from tests.support.daemon import DaemonProcess

HANG_GUARD_S = 30.0
DEVICES = """
[devices.printer]
driver = "sim"
render_dir = "{receipts}"
header = ["edged test store"]
[devices.scanner]
driver = "sim"
[devices.payment]
driver = "sim"
"""
EAN = "4006381333931"


def start_daemon(tmp_path: Path) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path / "terminal")
    receipts = tmp_path / "receipts"
    with daemon.config.open("a") as config:
        config.write(DEVICES.format(receipts=receipts))
    daemon.start()
    return daemon


async def next_event(client: ApiClient, type_: str, **match: Any) -> dict[str, Any]:
    async with asyncio.timeout(HANG_GUARD_S):
        async for event in client.events():
            data = event["data"]
            if event["type"] == type_ and all(data.get(k) == v for k, v in match.items()):
                return data
    raise AssertionError("the event stream ended")


async def all_ready(client: ApiClient) -> dict[str, Any]:
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            devices = (await client.call("status"))["devices"]
            if {d["state"] for d in devices.values()} == {"ready"}:
                return devices
            await asyncio.sleep(0.05)


async def paid(client: ApiClient, payment_id: str, amount: int) -> dict[str, Any]:
    started = await client.call(
        "payment.start", {"id": payment_id, "amount": amount, "currency": "EUR"}
    )
    assert started["state"] == "in_progress"
    return await next_event(client, "payment", id=payment_id, state="approved")


def card_sale(payment: dict[str, Any]) -> dict[str, Any]:
    result = payment["result"]
    card = {
        key: result[key]
        for key in ("masked_pan", "card_name", "auth_code", "trace_number", "terminal_id")
    }
    amount = payment["amount"]
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": amount,
        "lines": [{"sku": EAN, "name": "Pencil HB", "qty": 1, "amount": amount}],
        "payments": [{"method": "card", "amount": amount, "card": card}],
    }


@pytest.fixture
async def till(tmp_path: Path) -> AsyncIterator[tuple[DaemonProcess, ApiClient]]:
    daemon = start_daemon(tmp_path)
    try:
        async with ApiClient(daemon.socket) as client:
            await all_ready(client)
            await client.call("subscribe", {"events": ["scanner.scan", "payment", "device"]})
            yield daemon, client
    finally:
        daemon.terminate()


async def test_scan_pay_commit_print_and_open_the_drawer(
    till: tuple[DaemonProcess, ApiClient], tmp_path: Path
) -> None:
    _, client = till
    await client.call("sim.scan", {"code": EAN, "symbology": "]E0"})
    scan = await next_event(client, "scanner.scan")
    assert (scan["code"], scan["symbology"], scan["valid"], scan["gs1"]) == (
        EAN,
        "ean-13",
        True,
        None,
    )

    payment = await paid(client, "pay-1", 1250)
    assert payment["result"]["masked_pan"] == "679999*********0019"
    again = await client.call("payment.start", {"id": "pay-1", "amount": 1250, "currency": "EUR"})
    assert again == payment  # a retried start is the same payment, not a second charge
    assert await client.call("payment.get", {"id": "pay-1"}) == payment

    sale = card_sale(payment)
    committed = await client.call("sale.commit", {"sale": sale})
    first = await client.call("printer.print", {"sale_id": sale["id"]})
    assert (first["state"], first["copy"]) == ("printed", False)
    second = await client.call("printer.print", {"sale_id": sale["id"]})
    assert (second["state"], second["copy"]) == ("printed", True)
    slip = await client.call("printer.print", {"receipt": {"title": "X report", "lines": ["€ 1"]}})
    assert slip["state"] == "printed"

    texts = [p.read_text() for p in sorted((tmp_path / "receipts").glob("*.txt"))]
    assert len(texts) == 3
    assert committed["receipt_no"] in texts[0]
    assert "COPY" not in texts[0]
    assert "COPY" in texts[1]
    assert "€ 12.50" in texts[0]
    assert "X report" in texts[2]
    assert all((tmp_path / "receipts" / f"{n:04d}.png").exists() for n in (1, 2, 3))

    drawer = await client.call("drawer.open")
    assert drawer["pin"] == 2
    status = await client.call("printer.status")
    assert (status["state"], status["paper"]) == ("ready", "ok")


async def test_refund_reversal_and_end_of_day(till: tuple[DaemonProcess, ApiClient]) -> None:
    _, client = till
    payment = await paid(client, "pay-r", 700)
    reversal = await client.call("payment.reverse", {"id": "rev-1", "payment_id": "pay-r"})
    assert (reversal["kind"], reversal["reverses"], reversal["amount"]) == (
        "reversal",
        "pay-r",
        700,
    )
    done = await next_event(client, "payment", id="rev-1", state="approved")
    assert done["result"]["outcome"] == "approved"
    refund = await client.call("payment.refund", {"id": "ref-1", "amount": 250, "currency": "EUR"})
    assert refund["kind"] == "refund"
    await next_event(client, "payment", id="ref-1", state="approved")
    totals = await client.call("payment.end_of_day")
    assert totals["currency"] == "EUR"
    with pytest.raises(ApiError) as not_reversible:
        await client.call("payment.reverse", {"id": "rev-2", "payment_id": "ref-1"})
    assert not_reversible.value.code == codes.INVALID_PARAMS
    assert payment["result"]["receipt_no"] is not None


async def test_device_errors_are_clear(till: tuple[DaemonProcess, ApiClient]) -> None:
    _, client = till
    with pytest.raises(ApiError) as missing:
        await client.call("printer.print", {"sale_id": "no-such-sale"})
    assert missing.value.code == codes.SALE_NOT_FOUND
    with pytest.raises(ApiError) as both:
        await client.call("printer.print", {"sale_id": "x", "receipt": {"lines": []}})
    assert both.value.code == codes.INVALID_PARAMS
    with pytest.raises(ApiError) as bad:
        await client.call("payment.start", {"id": "p", "amount": 12.5, "currency": "EUR"})
    assert bad.value.code == codes.INVALID_PARAMS
    assert bad.value.data["errors"][0]["path"] == "amount"
    await paid(client, "pay-2", 500)
    with pytest.raises(ApiError) as conflict:
        await client.call("payment.start", {"id": "pay-2", "amount": 600, "currency": "EUR"})
    assert conflict.value.code == codes.PAYMENT_CONFLICT
    with pytest.raises(ApiError) as unknown:
        await client.call("payment.get", {"id": "never"})
    assert unknown.value.code == codes.PAYMENT_NOT_FOUND


async def test_no_devices_configured_is_a_clear_error(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        async with ApiClient(daemon.socket) as client:
            assert (await client.call("status"))["devices"] == {}
            for method, params in (
                ("printer.status", None),
                ("drawer.open", None),
                ("payment.get", {"id": "p"}),
                ("sim.scan", {"code": EAN}),
            ):
                with pytest.raises(ApiError) as caught:
                    await client.call(method, params)
                assert caught.value.code == codes.DEVICE_NOT_CONFIGURED, method
                assert "[devices." in str(caught.value)
    finally:
        daemon.terminate()


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


async def test_no_full_card_number_in_the_journal_or_the_log(tmp_path: Path) -> None:
    """DESIGN invariant 6: the sim sends the whole PAN on the wire; nothing may keep it."""
    daemon = start_daemon(tmp_path)
    try:
        async with ApiClient(daemon.socket) as client:
            await all_ready(client)
            await client.call("subscribe", {"events": ["payment"]})
            for n in range(3):
                payment = await paid(client, f"pay-{n}", 100 + n)
                sale = card_sale(payment)
                await client.call("sale.commit", {"sale": sale})
                await client.call("printer.print", {"sale_id": sale["id"]})
    finally:
        daemon.terminate()
    stored = b"".join(
        path.read_bytes()
        for path in (*daemon.workdir.glob("journal.db*"), daemon.log)
        if path.is_file()
    )
    text = stored.decode("latin-1")
    assert TEST_PAN not in text
    runs = [run for run in re.findall(r"(?<!\d)\d{13,19}(?!\d)", text) if _luhn(run)]
    assert runs == []


async def test_devices_come_back_after_a_restart(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        async with ApiClient(daemon.socket) as client:
            await all_ready(client)
        daemon.kill()
        daemon.start()
        async with ApiClient(daemon.socket) as client:
            devices = await all_ready(client)
            assert set(devices) == {"printer", "scanner", "payment"}
    finally:
        daemon.terminate()


async def test_a_concert_terminal_alone(tmp_path: Path) -> None:
    """Only a payment device, simulating Telium Concert E+: approve, and no cancel from the till."""
    daemon = DaemonProcess(tmp_path)
    with daemon.config.open("a") as config:
        config.write('[devices.payment]\ndriver = "sim"\nsimulate = "concert"\n')
    daemon.start()
    try:
        async with ApiClient(daemon.socket) as client:
            assert set(await all_ready(client)) == {"payment"}
            await client.call("subscribe", {"events": ["payment"]})
            payment = await paid(client, "c-1", 990)
            assert payment["result"]["amount"] == 990
            with pytest.raises(ApiError) as end_of_day:
                await client.call("payment.end_of_day")
            assert end_of_day.value.code == codes.NOT_SUPPORTED
    finally:
        daemon.terminate()
