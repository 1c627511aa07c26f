"""ZvtTerminal against SimZvtTerminal over a real pty pair and over TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from edged.backoff import Backoff
from edged.devices.payment.base import Authorisation, Outcome, PaymentResult, mask_pan
from edged.devices.payment.zvt.driver import DEFAULT_CONFIG, ZvtTerminal
from edged.devices.payment.zvt.protocol import NO_ANSWER
from edged.devices.payment.zvt.transport import ZvtTimings
from edged.devices.state import DeviceError, DeviceState, DeviceStatus
from edged.sim.zvt import TEST_PAN, SimZvtTerminal

WAIT_S = 20.0  # generous deadline for what should happen much sooner
TIMINGS = ZvtTimings(
    ack_timeout_s=1.0,
    command_timeout_s=3.0,
    result_timeout_s=10.0,
    connect_timeout_s=2.0,
    enquiry_interval_s=None,
)


@dataclass
class Rig:
    transport: str
    sim: SimZvtTerminal
    driver: ZvtTerminal
    status: DeviceStatus
    published: list[dict[str, Any]] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)

    async def until(self, what: str, predicate: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                while not predicate():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}; device is {self.status.snapshot()}")

    async def ready(self) -> None:
        await self.until("READY", lambda: self.status.state is DeviceState.READY)

    async def pay(self, amount: int = 1000) -> PaymentResult:
        async with asyncio.timeout(WAIT_S):
            return await self.driver.authorize(amount, "EUR", self.progress.append)


@contextlib.asynccontextmanager
async def running(transport: str, tmp_path: Path, timings: ZvtTimings) -> AsyncIterator[Rig]:
    sim = SimZvtTerminal(ack_timeout_s=1.0, pin_timeout_s=WAIT_S)
    published: list[dict[str, Any]] = []
    status = DeviceStatus("payment", lambda _kind, data: published.append(data))
    backoff = Backoff(0.05, 0.3)
    async with asyncio.TaskGroup() as tg:
        link = tmp_path / "zvt"
        serve = sim.run_pty(link) if transport == "pty" else sim.run_tcp()
        sim_task = tg.create_task(serve, name="test-zvt-sim")
        async with asyncio.timeout(WAIT_S):
            await sim.wait_online()
        if transport == "pty":
            driver = ZvtTerminal(status, path=str(link), timings=timings, backoff=backoff)
        else:
            driver = ZvtTerminal(
                status, host="127.0.0.1", port=sim.port, timings=timings, backoff=backoff
            )
        driver_task = tg.create_task(driver.run(), name="test-zvt-driver")
        rig = Rig(transport, sim, driver, status, published)
        try:
            await rig.ready()
            yield rig
        finally:
            driver_task.cancel()
            sim_task.cancel()


@pytest.fixture(params=["pty", "tcp"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(request.param, tmp_path, TIMINGS) as r:
        yield r


@pytest.fixture
async def serial_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running("pty", tmp_path, TIMINGS) as r:
        yield r


async def test_registration_on_connect(rig: Rig) -> None:
    assert rig.sim.commands[0] == "06 00"
    assert rig.sim.config == DEFAULT_CONFIG  # ECR controls payment, intermediate statuses
    assert rig.sim.currency == 978
    assert rig.status.detail == "terminal 52500038"
    report = await rig.driver.status_enquiry()
    assert (report.terminal_status, report.text) == (0, "ready")


async def test_approve(rig: Rig) -> None:
    result = await rig.pay(1000)
    assert result.outcome is Outcome.APPROVED
    assert result.amount == 1000 and result.currency == "EUR" and result.result_code == 0
    assert result.masked_pan == mask_pan(TEST_PAN) == "679999*********0019"
    assert (result.card_name, result.auth_code) == ("Mastercard", "A1B2C3")
    assert (result.terminal_id, result.trace_number, result.receipt_no) == ("52500038", 1, 1)
    assert result.authorisation is Authorisation.ONLINE
    assert rig.progress == ["insert card", "please wait", "waiting for the host"]
    busy = [p for p in rig.published if p["state"] == "busy"]
    assert busy and busy[-1]["detail"] == "payment in progress"
    assert rig.status.state is DeviceState.READY


async def test_approved_offline_by_the_terminal(rig: Rig) -> None:
    rig.sim.approve_offline_next()
    offline = await rig.pay(1999)
    assert (offline.outcome, offline.authorisation) == (Outcome.APPROVED, Authorisation.OFFLINE)
    assert (await rig.driver.last_result()) == offline  # repeat receipt says so too
    online = await rig.pay(500)
    assert online.authorisation is Authorisation.ONLINE


async def test_decline(rig: Rig) -> None:
    rig.sim.decline_next(0x05)
    result = await rig.pay(500)
    assert (result.outcome, result.result_code) == (Outcome.DECLINED, 0x05)
    assert result.message == "declined: declined by the card issuer's host (host code 0x05)"
    rig.sim.decline_next(0x64)
    result = await rig.pay(500)
    assert (result.outcome, result.message) == (Outcome.DECLINED, "declined: card not readable")
    assert rig.status.state is DeviceState.READY


async def test_cancel_mid_pin(rig: Rig) -> None:
    rig.sim.ask_pin_next()
    at_pin_pad = asyncio.Event()

    def progress(text: str) -> None:
        if text == "enter PIN":
            at_pin_pad.set()

    payment = asyncio.create_task(rig.driver.authorize(1000, "EUR", progress))
    async with asyncio.timeout(WAIT_S):
        await at_pin_pad.wait()
    assert rig.status.state is DeviceState.BUSY
    await rig.driver.abort()
    async with asyncio.timeout(WAIT_S):
        result = await payment
    assert (result.outcome, result.result_code) == (Outcome.ABORTED, 0x6C)
    assert rig.sim.last_transaction is not None
    assert rig.sim.last_transaction.result_code == 0x6C
    await rig.ready()
    assert (await rig.pay()).outcome is Outcome.APPROVED


async def test_pin_entered_approves(rig: Rig) -> None:
    rig.sim.ask_pin_next()
    payment = asyncio.create_task(rig.pay())
    await rig.until("enter PIN", lambda: "enter PIN" in rig.progress)
    rig.sim.enter_pin()
    async with asyncio.timeout(WAIT_S):
        assert (await payment).outcome is Outcome.APPROVED


async def test_abort_without_a_transaction_does_nothing(rig: Rig) -> None:
    await rig.driver.abort()
    assert "06 B0" not in rig.sim.commands


async def test_nak_then_retransmit_succeeds(serial_rig: Rig) -> None:
    serial_rig.sim.nak_next(3)
    result = await serial_rig.pay()
    assert result.outcome is Outcome.APPROVED
    assert serial_rig.sim.naks_sent == 3


async def test_nak_beyond_the_retry_limit_is_a_clear_error_and_the_driver_recovers(
    serial_rig: Rig,
) -> None:
    serial_rig.sim.nak_next(4)  # the first copy and three retransmissions
    with pytest.raises(DeviceError, match=r"rejected 06 01 4 times \(NAK\)"):
        await serial_rig.pay()
    assert serial_rig.sim.commands.count("06 01") == 0  # the PT never took the command
    assert serial_rig.status.state is DeviceState.READY
    assert (await serial_rig.pay()).outcome is Outcome.APPROVED


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_silent_terminal_gives_unknown_and_no_answer(transport: str, tmp_path: Path) -> None:
    quick = ZvtTimings(
        ack_timeout_s=1.0, command_timeout_s=3.0, result_timeout_s=0.5, enquiry_interval_s=None
    )
    async with running(transport, tmp_path, quick) as rig:
        rig.sim.silent_next()
        result = await rig.pay()
        assert result.outcome is Outcome.UNKNOWN  # not DECLINED: nobody knows
        assert result.message.startswith(NO_ANSWER)
        errors = [p["detail"] for p in rig.published if p["state"] == "error"]
        assert errors and errors[0] == NO_ANSWER
        await rig.ready()  # reconnected and registered again
        assert (await rig.pay()).outcome is Outcome.APPROVED


async def test_unplug_while_idle_then_replug(rig: Rig) -> None:
    rig.sim.unplug()
    await rig.until(
        "the device to leave READY",
        lambda: rig.status.state in (DeviceState.ABSENT, DeviceState.ERROR),
    )
    if rig.transport == "pty":  # the udev-like symlink is gone with the cable
        await rig.until("ABSENT", lambda: rig.status.state is DeviceState.ABSENT)
    with pytest.raises(DeviceError, match="the payment terminal is not ready"):
        await rig.pay()
    rig.sim.replug()
    await rig.ready()
    assert (await rig.pay()).outcome is Outcome.APPROVED


async def test_last_result_matches_the_approved_payment(rig: Rig) -> None:
    assert await rig.driver.last_result() is None  # nothing done yet
    approved = await rig.pay(1234)
    assert await rig.driver.last_result() == approved


async def test_refund_and_reversal(rig: Rig) -> None:
    approved = await rig.pay(1000)
    refund = await rig.driver.refund(300, "EUR", rig.progress.append)
    assert (refund.outcome, refund.amount) == (Outcome.APPROVED, 300)
    assert approved.receipt_no is not None
    reversal = await rig.driver.reverse(approved.receipt_no, rig.progress.append)
    assert (reversal.outcome, reversal.amount) == (Outcome.APPROVED, 1000)
    again = await rig.driver.reverse(approved.receipt_no, rig.progress.append)
    assert (again.outcome, again.result_code) == (Outcome.DECLINED, 0xB5)


async def test_end_of_day(rig: Rig) -> None:
    await rig.pay(1000)
    await rig.pay(250)
    rig.sim.decline_next()
    await rig.pay(999)
    totals = await rig.driver.end_of_day(rig.progress.append)
    assert totals["total"] == 1250 and totals["currency"] == "EUR"
    assert totals["result_code"] == 0
    assert (await rig.driver.end_of_day(rig.progress.append))["total"] == 0


async def test_no_full_pan_in_results_or_logs(rig: Rig) -> None:
    assert not rig.sim.masks_pan  # the simulator sends the whole PAN on the wire
    with structlog.testing.capture_logs() as logs:
        results = [await rig.pay()]
        rig.sim.decline_next()
        results.append(await rig.pay())
        last = await rig.driver.last_result()
        assert last is not None
        results.append(last)
    assert sum(e["event"] == "zvt_transaction_result" for e in logs) == 2  # logs were seen
    text = repr([r.to_dict() for r in results]) + repr(results) + repr(logs)
    assert TEST_PAN not in text
    assert (TEST_PAN + "F").lower() not in text.lower()  # nor its BCD bytes in hex
    assert not re.search(r"\d{13,19}", text), "something that looks like a PAN"
    assert all(r.masked_pan == mask_pan(TEST_PAN) for r in results)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_idle_status_enquiry_notices_a_hung_terminal(transport: str, tmp_path: Path) -> None:
    polling = ZvtTimings(
        ack_timeout_s=1.0, command_timeout_s=0.5, result_timeout_s=2.0, enquiry_interval_s=0.2
    )
    async with running(transport, tmp_path, polling) as rig:
        await rig.until("a status enquiry", lambda: "05 01" in rig.sim.commands)
        rig.sim.freeze()
        await rig.until(
            "ERROR no answer",
            lambda: any(p["detail"] == NO_ANSWER for p in rig.published if p["state"] == "error"),
        )
        rig.sim.thaw()
        await rig.ready()
        assert (await rig.pay()).outcome is Outcome.APPROVED


async def test_a_terminal_that_lost_the_registration_is_registered_again(rig: Rig) -> None:
    rig.sim.forget_registration()  # it rebooted
    result = await rig.pay()
    assert (result.outcome, result.result_code) == (Outcome.DECLINED, 0x6B)
    assert "not registered" in result.message
    await rig.until("a new registration", lambda: rig.sim.commands.count("06 00") == 2)
    await rig.ready()
    assert (await rig.pay()).outcome is Outcome.APPROVED


async def test_unplug_during_a_payment_gives_unknown(rig: Rig) -> None:
    rig.sim.ask_pin_next()
    payment = asyncio.create_task(rig.pay())
    await rig.until("enter PIN", lambda: "enter PIN" in rig.progress)
    rig.sim.unplug()
    async with asyncio.timeout(WAIT_S):
        result = await payment
    assert result.outcome is Outcome.UNKNOWN
    assert "the connection was lost during the payment" in result.message
    rig.sim.replug()
    await rig.ready()
