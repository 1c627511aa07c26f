"""PaymentService over real drivers (Concert, ZVT) talking to their simulators on ptys."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from edged.devices.payment.base import PaymentResult, Progress
from edged.devices.payment.concert import ConcertTerminal
from edged.devices.payment.concert.codec import TransactionType
from edged.devices.payment.service import (
    NOT_ON_TERMINAL,
    RESTART_UNKNOWN,
    PaymentBusyError,
    PaymentConflictError,
    PaymentNotFoundError,
    PaymentService,
)
from edged.devices.payment.zvt.driver import ZvtTerminal
from edged.devices.state import DeviceState, DeviceStatus
from edged.errors import DeviceNotReadyError, NotSupportedError, ValidationError
from edged.sim.concert import Reply, SimConcertTerminal
from edged.sim.zvt import TEST_PAN as ZVT_TEST_PAN
from edged.sim.zvt import SimZvtTerminal
from tests.support.concert import HANG_GUARD_S, concert_rig, wait_state
from tests.support.ledger import MemoryLedger

PAN_LIKE = re.compile(r"\d{13,19}")


class Events(list[tuple[str, dict[str, Any]]]):
    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.append((kind, json.loads(json.dumps(data))))

    def payments(self, payment_id: str) -> list[dict[str, Any]]:
        return [d for kind, d in self if kind == "payment" and d["id"] == payment_id]


class RememberingTerminal:
    """A Concert terminal as if it could repeat its last transaction (as ZVT terminals can).

    Real payments go through the ConcertTerminal and the simulator; only `last_result`, which
    Concert E+ lacks, is answered from what this terminal saw.
    """

    def __init__(self, inner: ConcertTerminal) -> None:
        self.inner = inner
        self.status: DeviceStatus = inner.status
        self.last: PaymentResult | None = None
        self.trace = 0

    def _remember(self, result: PaymentResult) -> PaymentResult:
        self.trace += 1  # numbered, as a ZVT terminal numbers its transactions
        self.last = msgspec.structs.replace(result, trace_number=self.trace)
        return self.last

    async def run(self) -> None:
        await self.inner.run()

    async def authorize(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        return self._remember(await self.inner.authorize(amount, currency, progress))

    async def refund(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        return self._remember(await self.inner.refund(amount, currency, progress))

    async def reverse(self, receipt_no: int, progress: Progress) -> PaymentResult:
        return await self.inner.reverse(receipt_no, progress)

    async def abort(self) -> None:
        await self.inner.abort()

    async def last_result(self) -> PaymentResult | None:
        return self.last

    async def end_of_day(self, progress: Progress) -> dict[str, Any]:
        return await self.inner.end_of_day(progress)


@contextlib.asynccontextmanager
async def serving(service: PaymentService) -> AsyncIterator[None]:
    task = asyncio.create_task(service.run(), name="payments-under-test")
    try:
        await wait_state(service.terminal.status, DeviceState.READY)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Rig:
    sim: SimConcertTerminal
    service: PaymentService
    ledger: MemoryLedger
    events: Events


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, ledger: MemoryLedger | None = None, **settings: Any
) -> AsyncIterator[Rig]:
    events = Events()
    ledger = ledger or MemoryLedger()
    async with concert_rig(tmp_path, events, run=False, **settings) as (sim, terminal):
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        async with serving(service):
            yield Rig(sim, service, ledger, events)


async def finished(service: PaymentService, payment_id: str) -> dict[str, Any]:
    async with asyncio.timeout(HANG_GUARD_S):
        while (record := await service.get(payment_id))["state"] == "in_progress":
            await asyncio.sleep(0.02)
    return record


def in_progress(payment_id: str, amount: int) -> dict[str, Any]:
    return {
        "id": payment_id,
        "kind": "payment",
        "amount": amount,
        "currency": "EUR",
        "state": "in_progress",
        "result": None,
        "message": "starting",
        "created_at": "2026-11-23T09:00:00.000Z",
        "updated_at": "2026-11-23T09:00:00.000Z",
    }


async def test_a_payment_runs_and_is_stored_and_published(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        record = await r.service.start("p1", 1000, "EUR")
        assert (record["state"], record["kind"], record["result"]) == (
            "in_progress",
            "payment",
            None,
        )
        done = await finished(r.service, "p1")
        assert done["state"] == "approved"
        assert done["result"]["outcome"] == "approved"
        assert done["result"]["amount"] == 1000
        assert await r.ledger.get_payment("p1") == done
        published = r.events.payments("p1")
        assert published[0]["state"] == "in_progress"
        assert {
            "id": "p1",
            "state": "in_progress",
            "message": "waiting for the cardholder on the terminal",
        } in published
        assert published[-1] == done
        assert r.sim.requests[0].transaction_type is TransactionType.DEBIT


async def test_the_record_is_durable_before_the_terminal_hears_of_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.ledger.gate = asyncio.Event()
        start = asyncio.create_task(r.service.start("p1", 1000, "EUR"))
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not start.done()
        assert r.sim.requests == []  # nothing was sent while the write had not returned
        r.ledger.gate.set()
        await start
        await finished(r.service, "p1")
        assert [w["state"] for w in r.ledger.writes] == ["in_progress", "approved"]


async def test_a_retried_start_returns_the_same_payment(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.sim.script(Reply.approve(delay_s=0.3))
        first = await r.service.start("p1", 1000, "EUR")
        again = await r.service.start("p1", 1000, "EUR")
        assert again["id"] == first["id"]
        assert again["state"] == "in_progress"
        done = await finished(r.service, "p1")
        assert await r.service.start("p1", 1000, "EUR") == done
        assert len(r.sim.requests) == 1


async def test_the_same_id_with_other_terms_is_a_conflict(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.service.start("p1", 1000, "EUR")
        with pytest.raises(PaymentConflictError) as caught:
            await r.service.start("p1", 1001, "EUR")
        assert caught.value.payment_id == "p1"
        with pytest.raises(PaymentConflictError):
            await r.service.refund("p1", 1000, "EUR")
        await finished(r.service, "p1")


async def test_one_payment_at_a_time(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.sim.script(Reply.approve(delay_s=0.3))
        await r.service.start("p1", 1000, "EUR")
        with pytest.raises(PaymentBusyError) as caught:
            await r.service.start("p2", 500, "EUR")
        assert caught.value.busy_id == "p1"
        assert "p1" in str(caught.value)
        with pytest.raises(PaymentNotFoundError):
            await r.service.get("p2")
        await finished(r.service, "p1")
        await r.service.start("p2", 500, "EUR")
        assert (await finished(r.service, "p2"))["state"] == "approved"


@pytest.mark.parametrize(
    ("amount", "currency", "paths"),
    [
        (0, "EUR", ["amount"]),
        (-5, "EUR", ["amount"]),
        (10.5, "EUR", ["amount"]),
        (True, "EUR", ["amount"]),
        ("100", "eur", ["amount", "currency"]),
        (100, "EURO", ["currency"]),
        (100, "CHF", ["currency"]),
    ],
)
async def test_bad_amounts_and_currencies(
    tmp_path: Path, amount: Any, currency: Any, paths: list[str]
) -> None:
    async with rig(tmp_path) as r:
        with pytest.raises(ValidationError) as caught:
            await r.service.start("p1", amount, currency)
        assert [p.path for p in caught.value.problems] == paths
        assert r.ledger.writes == []


async def test_declined_and_silent_payments(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.sim.script(Reply.decline(), Reply.time_out())
        await r.service.start("p1", 1000, "EUR")
        assert (await finished(r.service, "p1"))["state"] == "declined"
        await r.service.start("p2", 1000, "EUR")
        silent = await finished(r.service, "p2")
        assert silent["state"] == "unknown"
        assert "no answer from the payment terminal" in silent["message"]


async def test_a_refund(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        record = await r.service.refund("r1", 300, "EUR")
        assert record["kind"] == "refund"
        assert (await finished(r.service, "r1"))["state"] == "approved"
        assert r.sim.requests[0].transaction_type is TransactionType.REFUND


async def test_cancel(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.sim.script(Reply.approve(delay_s=0.5))
        await r.service.start("p1", 1000, "EUR")
        async with asyncio.timeout(HANG_GUARD_S):
            while len(r.events.payments("p1")) < 2:  # the request reached the terminal
                await asyncio.sleep(0.02)
        with pytest.raises(NotSupportedError, match="red cancel key"):
            await r.service.cancel("p1")
        done = await finished(r.service, "p1")
        assert await r.service.cancel("p1") == {"was_in_progress": False, "payment": done}
        with pytest.raises(PaymentNotFoundError):
            await r.service.cancel("nope")


async def test_no_start_while_the_terminal_is_away(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.sim.unplug()
        await wait_state(r.service.terminal.status, DeviceState.ABSENT)
        with pytest.raises(DeviceNotReadyError) as caught:
            await r.service.start("p1", 1000, "EUR")
        assert caught.value.state == "absent"
        assert r.ledger.writes == []


async def test_after_a_restart_a_matching_last_transaction_settles_it(tmp_path: Path) -> None:
    events = Events()
    async with concert_rig(tmp_path, events, run=False) as (sim, concert):
        terminal = RememberingTerminal(concert)
        ledger = MemoryLedger(in_progress("p1", 1000))
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        await _the_terminal_last_did(sim, terminal, 1000, Reply.decline())
        async with serving(service):
            record = await finished(service, "p1")
        assert record["state"] == "declined"
        assert record["result"]["amount"] == 1000
        assert "after a restart" in record["message"]
        assert events.payments("p1")[-1] == record


async def test_after_a_restart_another_last_transaction_means_not_completed(
    tmp_path: Path,
) -> None:
    events = Events()
    async with concert_rig(tmp_path, events, run=False) as (sim, concert):
        terminal = RememberingTerminal(concert)
        ledger = MemoryLedger(in_progress("p1", 1000))
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        await _the_terminal_last_did(sim, terminal, 4200, Reply.approve())
        async with serving(service):
            record = await finished(service, "p1")
        assert (record["state"], record["message"]) == ("aborted", NOT_ON_TERMINAL)


async def test_after_a_restart_a_terminal_that_cannot_tell_means_unknown(tmp_path: Path) -> None:
    async with rig(tmp_path, MemoryLedger(in_progress("p1", 1000))) as r:
        record = await finished(r.service, "p1")
        assert (record["state"], record["message"]) == ("unknown", RESTART_UNKNOWN)
        assert "last receipt" in record["message"]
        assert r.sim.requests == []  # never charged again on its own
        await r.service.start("p2", 1000, "EUR")  # and the terminal is free again
        assert (await finished(r.service, "p2"))["state"] == "approved"


async def test_no_full_card_number_in_records_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        async with rig(tmp_path, pan_report=True) as r:
            r.sim.script(Reply.approve(), Reply.decline())
            for payment_id in ("p1", "p2"):
                await r.service.start(payment_id, 1000, "EUR")
                await finished(r.service, payment_id)
            record = await r.service.get("p1")
    assert record["result"]["masked_pan"] == "497010******0014"
    assert any(entry["event"] == "payment_result" for entry in logs)  # the scan saw the logs
    texts = {
        "records": b" ".join(r.ledger.rows.values()).decode(),
        "events": json.dumps(list(r.events)),
        "logs": json.dumps(logs, default=str) + caplog.text,
    }
    for where, text in texts.items():
        assert r.sim.pan not in text, where
        assert not PAN_LIKE.search(text), (where, PAN_LIKE.search(text))


async def _the_terminal_last_did(
    sim: SimConcertTerminal, terminal: RememberingTerminal, amount: int, reply: Reply
) -> None:
    """Run one real transaction on the terminal, as the daemon did before it stopped."""
    running = asyncio.create_task(terminal.run())
    try:
        await wait_state(terminal.status, DeviceState.READY)
        sim.script(reply)
        await terminal.authorize(amount, "EUR", lambda text: None)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


# -- the same service in front of a ZVT terminal (its driver and simulator) -----------------


@contextlib.asynccontextmanager
async def zvt_terminal(
    tmp_path: Path, events: Events
) -> AsyncIterator[tuple[SimZvtTerminal, ZvtTerminal]]:
    link = tmp_path / "zvt"
    sim = SimZvtTerminal()
    served = asyncio.create_task(sim.run_pty(link), name="zvt-sim")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await sim.wait_online()
        yield sim, ZvtTerminal(DeviceStatus("payment", events), path=str(link))
    finally:
        served.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await served


async def test_zvt_payment_with_progress_and_no_full_pan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events, ledger = Events(), MemoryLedger()
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        async with zvt_terminal(tmp_path, events) as (sim, terminal):
            service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
            async with serving(service):
                sim.decline_next()
                for payment_id in ("z1", "z2"):
                    await service.start(payment_id, 1000, "EUR")
                    await finished(service, payment_id)
    states = [w["state"] for w in ledger.writes]
    assert states == ["in_progress", "declined", "in_progress", "approved"]
    assert ledger.writes[-1]["result"]["masked_pan"].endswith("0019")
    progress = [d["message"] for d in events.payments("z1") if "result" not in d]
    assert "insert card" in progress
    texts = [b" ".join(ledger.rows.values()).decode(), json.dumps(list(events))]
    texts.append(json.dumps(logs, default=str) + caplog.text)
    for text in texts:
        assert ZVT_TEST_PAN not in text
        assert not PAN_LIKE.search(text), PAN_LIKE.search(text)


async def test_zvt_cancel_while_waiting_for_the_pin(tmp_path: Path) -> None:
    events = Events()
    async with zvt_terminal(tmp_path, events) as (sim, terminal):
        service = PaymentService(terminal, MemoryLedger(), events, currency="EUR", where=dt.UTC)
        async with serving(service):
            sim.ask_pin_next()
            await service.start("z1", 1000, "EUR")
            async with asyncio.timeout(HANG_GUARD_S):
                while not any(d.get("message") == "enter PIN" for d in events.payments("z1")):
                    await asyncio.sleep(0.02)
            answer = await service.cancel("z1")
            assert answer["was_in_progress"] is True
            assert (await finished(service, "z1"))["state"] == "aborted"


@pytest.mark.parametrize(("left_open", "state"), [(1000, "approved"), (4200, "aborted")])
async def test_zvt_restart_settles_with_the_terminals_last_transaction(
    tmp_path: Path, left_open: int, state: str
) -> None:
    events = Events()
    async with zvt_terminal(tmp_path, events) as (sim, terminal):
        running = asyncio.create_task(terminal.run())
        try:
            await wait_state(terminal.status, DeviceState.READY)
            await terminal.authorize(1000, "EUR", lambda text: None)  # the terminal's last one
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        ledger = MemoryLedger(in_progress("p1", left_open))
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        async with serving(service):
            record = await finished(service, "p1")
    assert record["state"] == state
    if state == "aborted":
        assert record["message"] == NOT_ON_TERMINAL
    else:
        assert record["result"]["trace_number"] == sim.journal[-1].trace_number


async def test_zvt_restart_does_not_take_an_older_settled_transaction_for_ours(
    tmp_path: Path,
) -> None:
    """Same amount as the terminal's last transaction, but that one was settled before."""
    events = Events()
    async with zvt_terminal(tmp_path, events) as (_sim, terminal):
        running = asyncio.create_task(terminal.run())
        try:
            await wait_state(terminal.status, DeviceState.READY)
            earlier = await terminal.authorize(1000, "EUR", lambda text: None)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        settled = {**in_progress("p0", 1000), "state": "approved", "result": earlier.to_dict()}
        ledger = MemoryLedger(settled, in_progress("p1", 1000))
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        async with serving(service):
            record = await finished(service, "p1")
    assert (record["state"], record["message"]) == ("aborted", NOT_ON_TERMINAL)


async def test_zvt_offline_approvals_are_counted_until_the_end_of_day(tmp_path: Path) -> None:
    events, ledger = Events(), MemoryLedger()
    async with zvt_terminal(tmp_path, events) as (sim, terminal):
        service = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        async with serving(service):
            for payment_id, amount, offline in (("o1", 1250, True), ("n1", 300, False)):
                if offline:
                    sim.approve_offline_next()
                await service.start(payment_id, amount, "EUR")
                record = await finished(service, payment_id)
                assert record["result"]["authorisation"] == ("offline" if offline else "online")
            sim.approve_offline_next()
            await service.start("o2", 700, "EUR")
            await finished(service, "o2")
            report = service.offline_report()
            assert report is not None
            assert (report["count"], report["total"], report["currency"]) == (2, 1950, "EUR")
            await service.reverse("r2", "o2")  # reversed: nothing to follow up
            assert (await finished(service, "r2"))["state"] == "approved"
            assert service.offline_report() == {**report, "count": 1, "total": 1250}
        restarted = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        assert restarted.offline_report() is None  # not read from the journal yet
        async with serving(restarted):
            async with asyncio.timeout(HANG_GUARD_S):
                while restarted.offline_report() is None:
                    await asyncio.sleep(0.01)
            assert restarted.offline_report() == {**report, "count": 1, "total": 1250}
            await restarted.end_of_day()
            closed = restarted.offline_report()
            assert closed is not None and (closed["count"], closed["total"]) == (0, 0)
            assert closed["since"] > report["since"]  # the end of day, not midnight
        again = PaymentService(terminal, ledger, events, currency="EUR", where=dt.UTC)
        async with serving(again):
            async with asyncio.timeout(HANG_GUARD_S):
                while again.offline_report() is None:
                    await asyncio.sleep(0.01)
            assert again.offline_report() == closed  # the end of day is journaled too
