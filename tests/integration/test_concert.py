"""ConcertTerminal against SimConcertTerminal over a pty: the driver's real serial path."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from edged.devices.payment.base import Authorisation, Outcome, PaymentTerminal
from edged.devices.payment.concert import NotSupported
from edged.devices.payment.concert.codec import TransactionType
from edged.devices.payment.concert.driver import NO_ANSWER
from edged.devices.state import DeviceAbsent, DeviceError, DeviceState
from edged.errors import NotSupportedError
from edged.sim.concert import Reply
from tests.support.concert import HANG_GUARD_S, concert_rig, wait_state


class Progress:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.accepted = asyncio.Event()

    def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.accepted.set()


async def test_approved_payment(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        progress = Progress()
        result = await terminal.authorize(1000, "EUR", progress)
        assert result.outcome is Outcome.APPROVED
        assert (result.amount, result.currency, result.result_code) == (1000, "EUR", 0)
        assert result.masked_pan is None  # short answers carry no card number
        assert result.authorisation is Authorisation.UNKNOWN  # E+ never says who approved
        assert result.to_dict()["authorisation"] == "unknown"
        assert progress.texts == ["waiting for the cardholder on the terminal"]
        assert [r.encode() for r in sim.requests] == [b"0100001000010978          A010B010"]
        assert terminal.status.state is DeviceState.READY


async def test_declined_payment(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        sim.script(Reply.decline())
        result = await terminal.authorize(2500, "EUR", Progress())
        assert result.outcome is Outcome.DECLINED
        assert result.result_code == 7
        assert "declined" in result.message


async def test_refund_is_transaction_type_2(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        result = await terminal.refund(700, "EUR", Progress())
        assert result.outcome is Outcome.APPROVED
        assert sim.requests[0].transaction_type is TransactionType.REFUND
        assert sim.requests[0].amount == 700


async def test_silence_after_the_request_is_unknown_never_approved(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        sim.script(Reply.time_out())
        result = await terminal.authorize(1000, "EUR", Progress())
        assert result.outcome is Outcome.UNKNOWN
        assert NO_ANSWER in result.message
        assert "last receipt" in result.message
        assert (terminal.status.state, terminal.status.detail) == (DeviceState.ERROR, NO_ANSWER)
        # The terminal answers ENQ again: the probe brings the device back to ready.
        await wait_state(terminal.status, DeviceState.READY)
        assert (await terminal.authorize(1000, "EUR", Progress())).outcome is Outcome.APPROVED


async def test_a_mute_terminal_charges_nothing(tmp_path: Path) -> None:
    async with concert_rig(tmp_path, reply_timeout_s=0.5) as (sim, terminal):
        sim.mute = True
        result = await terminal.authorize(1000, "EUR", Progress())
        assert result.outcome is Outcome.ABORTED
        assert NO_ANSWER in result.message
        assert "nothing was charged" in result.message
        assert sim.requests == []
        assert terminal.status.state is DeviceState.ERROR
        assert terminal.status.detail.startswith(NO_ANSWER)
        sim.mute = False
        await wait_state(terminal.status, DeviceState.READY)


async def test_naked_request_frames_are_sent_again(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        sim.nak_next(2)
        result = await terminal.authorize(1000, "EUR", Progress())
        assert result.outcome is Outcome.APPROVED
        assert len(sim.requests) == 1


async def test_a_request_naked_every_time_is_not_started(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        sim.nak_next(3)
        result = await terminal.authorize(1000, "EUR", Progress())
        assert result.outcome is Outcome.ABORTED
        assert "refused the request 3 times (NAK)" in result.message
        assert sim.requests == []
        assert terminal.status.state is DeviceState.READY
        assert (await terminal.authorize(1000, "EUR", Progress())).outcome is Outcome.APPROVED


async def test_corrupted_answers_are_naked_and_read_again(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        sim.script(Reply(corrupt=2))
        result = await terminal.authorize(1000, "EUR", Progress())
        assert result.outcome is Outcome.APPROVED


async def test_the_card_number_is_masked_at_once(tmp_path: Path) -> None:
    async with concert_rig(tmp_path, pan_report=True) as (sim, terminal):
        result = await terminal.authorize(1000, "EUR", Progress())
        assert sim.requests[0].answer_flag == "1"
        assert result.masked_pan == "497010******0014"
        assert sim.pan not in repr(result)
        assert not re.search(r"\d{13,19}", repr(result.to_dict()))


async def test_unplug_then_replug(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        await sim.unplug()
        await wait_state(terminal.status, DeviceState.ABSENT)
        with pytest.raises(DeviceAbsent):
            await terminal.authorize(1000, "EUR", Progress())
        sim.plug()
        await wait_state(terminal.status, DeviceState.READY)
        assert (await terminal.authorize(1000, "EUR", Progress())).outcome is Outcome.APPROVED


async def test_unplug_during_the_payment_is_unknown(tmp_path: Path) -> None:
    async with concert_rig(tmp_path, answer_timeout_s=HANG_GUARD_S) as (sim, terminal):
        sim.script(Reply.approve(delay_s=HANG_GUARD_S))
        progress = Progress()
        payment = asyncio.create_task(terminal.authorize(1000, "EUR", progress))
        await asyncio.wait_for(progress.accepted.wait(), HANG_GUARD_S)
        await sim.unplug()
        result = await asyncio.wait_for(payment, HANG_GUARD_S)
        assert result.outcome is Outcome.UNKNOWN
        assert "connection to the terminal was lost" in result.message


async def test_what_concert_e_plus_cannot_do(tmp_path: Path) -> None:
    async with concert_rig(tmp_path) as (sim, terminal):
        as_protocol: PaymentTerminal = terminal
        assert await as_protocol.last_result() is None
        await terminal.abort()  # nothing in progress: nothing to do
        with pytest.raises(NotSupported, match="refund"):
            await terminal.reverse(42, Progress())
        with pytest.raises(NotSupported, match="its own schedule"):
            await terminal.end_of_day(Progress())
        with pytest.raises(NotSupported, match="set up for EUR, not CHF"):
            await terminal.authorize(1000, "CHF", Progress())
        sim.script(Reply.approve(delay_s=0.5))
        progress = Progress()
        payment = asyncio.create_task(terminal.authorize(1000, "EUR", progress))
        await asyncio.wait_for(progress.accepted.wait(), HANG_GUARD_S)
        with pytest.raises(NotSupported, match="red cancel key") as caught:
            await terminal.abort()
        assert isinstance(caught.value, DeviceError)
        assert isinstance(caught.value, NotSupportedError)
        assert (await payment).outcome is Outcome.APPROVED
