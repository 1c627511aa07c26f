"""PaymentService: card payments as the API sees them, journaled before the terminal hears of them.

A payment is a record keyed by the id the POS chose, so a retried `start` is harmless. The
record is durably `in_progress` before a byte goes to the terminal; the authorization runs in
the background and its end is stored and published. After a restart, a record still
`in_progress` is settled with the terminal's own account of its last transaction, and marked
`unknown` (never `approved`) when the terminal cannot tell.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import structlog

from edged.clock import utc_now_iso
from edged.devices.payment.base import Outcome, PaymentResult, PaymentTerminal
from edged.devices.payment.offline import OfflineTally
from edged.devices.state import DeviceAbsent, DeviceError, DeviceState
from edged.errors import (
    DeviceNotReadyError,
    NotSupportedError,
    PaymentBusyError,
    PaymentConflictError,
    PaymentNotFoundError,
    Problem,
    ValidationError,
)

log = structlog.get_logger(__name__)

RESOLVE_WAIT_S = 30.0  # after a restart, how long to wait for the terminal to answer
RESOLVE_RETRY_S = 1.0
CURRENCY = re.compile(r"[A-Z]{3}")

CHECK_RECEIPT = "check the terminal's last receipt before charging again"
RESTART_UNKNOWN = (
    f"the daemon restarted during this payment and the terminal cannot tell how it ended: "
    f"{CHECK_RECEIPT}"
)
NOT_ON_TERMINAL = "not completed on the terminal"

Kind = Literal["payment", "refund", "reversal"]
END_OF_DAY = "end-of-day"  # what PaymentBusyError names while the batch is being closed


class PaymentLedger(Protocol):
    """Durable payment records (the journal implements it); every write is durable on return."""

    async def put_payment(self, record: dict[str, Any]) -> None:
        """Insert or replace the record with `record["id"]`."""
        ...

    async def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        """The record, or None for an id never stored."""
        ...

    async def unfinished_payments(self) -> list[dict[str, Any]]:
        """Records whose state is `in_progress`, oldest first."""
        ...

    async def last_settled_result(self) -> dict[str, Any] | None:
        """The `result` of the newest finished record that names a trace or receipt number."""
        ...

    async def last_day_closed_at(self) -> str | None:
        """`updated_at` of the newest `end_of_day` record, or None."""
        ...

    async def offline_approvals_since(self, since: str) -> list[dict[str, Any]]:
        """Approved payments whose result says `offline`, updated at or after `since`, that
        no approved reversal names."""
        ...


class PaymentService:
    """Starts, cancels and reports card payments on one terminal; one at a time.

    `run()` supervises the terminal (its `run()`) too: do not run the terminal elsewhere.
    """

    def __init__(
        self,
        terminal: PaymentTerminal,
        ledger: PaymentLedger,
        publish: Callable[[str, dict[str, Any]], None],
        *,
        currency: str,
        where: dt.tzinfo,
    ) -> None:
        self.terminal = terminal
        self.currency = currency  # the only currency the terminal is set up for
        self._ledger = ledger
        self._publish = publish
        self._lock = asyncio.Lock()  # start/refund: check and claim the terminal atomically
        self._tasks: asyncio.TaskGroup | None = None
        self._current: str | None = None  # the payment the terminal works on (or is settling)
        self._live: dict[str, dict[str, Any]] = {}  # records newer than the ledger's copy
        self.offline = OfflineTally(where)  # for `status`; rebuilt from the ledger by run()

    async def run(self) -> None:
        """Settle the last run's open payments, then serve started ones until cancelled."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.terminal.run(), name=f"{self.terminal.status.name}-device")
                self._tasks = tasks
                await self._load_offline()
                await self._resolve_unfinished()
                await asyncio.Future()  # forever; payments run as tasks of the group
        finally:  # cancelled: open payments stay in_progress in the ledger for the next run
            self._tasks = None
            self._current = None
            self._live = {k: r for k, r in self._live.items() if r["state"] != "in_progress"}

    async def start(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        """Charge `amount`; returns the record (in_progress), or the known one for this id."""
        return await self._begin("payment", payment_id, amount, currency)

    async def refund(self, payment_id: str, amount: int, currency: str) -> dict[str, Any]:
        """Credit `amount` back to a card; the same rules as `start`."""
        return await self._begin("refund", payment_id, amount, currency)

    async def reverse(self, payment_id: str, original_id: str) -> dict[str, Any]:
        """Cancel the approved payment `original_id` on the terminal (a reversal, same day).

        `payment_id` names the reversal itself, so a retried call is harmless like `start`.
        """
        original = await self.get(original_id)
        receipt_no = (original.get("result") or {}).get("receipt_no")
        if original["kind"] != "payment" or original["state"] != "approved" or receipt_no is None:
            raise ValidationError(
                [
                    Problem(
                        "payment_id",
                        f"payment {original_id} is {original['state']} {original['kind']} "
                        "without a terminal receipt number; only an approved payment can be "
                        "reversed (use a refund otherwise)",
                    )
                ]
            )
        return await self._begin(
            "reversal",
            payment_id,
            original["amount"],
            original["currency"],
            extra={"reverses": original_id, "terminal_receipt_no": receipt_no},
        )

    async def end_of_day(self) -> dict[str, Any]:
        """Close the terminal's batch (end of day); returns the totals it reported."""
        async with self._lock:
            if self._current is not None:
                raise PaymentBusyError(self._current)
            self._ready()
            self._current = END_OF_DAY
        try:
            log.info("payment_end_of_day_started")

            def progress(text: str) -> None:
                self._publish(
                    "payment", {"id": END_OF_DAY, "state": "in_progress", "message": text}
                )

            totals = await self.terminal.end_of_day(progress)
            log.info("payment_end_of_day_finished", total=totals.get("total"))
            await self._day_closed(totals)
            return totals
        finally:
            self._current = None

    def offline_report(self) -> dict[str, Any] | None:
        """Offline-approved payments since the last end of day: {count, total, currency, since}."""
        return self.offline.report(self.currency)

    async def _load_offline(self) -> None:
        closed_at = await self._ledger.last_day_closed_at()
        if closed_at is not None:
            self.offline.closed(closed_at)
        self.offline.load(await self._ledger.offline_approvals_since(self.offline.since()))

    async def _day_closed(self, totals: dict[str, Any]) -> None:
        """Journal the end of day: the offline tally starts again from here, across restarts."""
        now = utc_now_iso()
        record = {
            "id": f"{END_OF_DAY}:{now}",
            "kind": "end_of_day",
            "amount": 0,
            "currency": self.currency,
            "state": "closed",
            "result": None,
            "totals": {k: totals.get(k) for k in ("total", "currency", "trace_number")},
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._ledger.put_payment(record)
        except Exception:  # the batch is closed all the same; only the tally's start is lost
            log.exception("payment_end_of_day_not_saved")
        self.offline.closed(now)

    async def get(self, payment_id: str) -> dict[str, Any]:
        """The record; PaymentNotFoundError for an id never started."""
        record = await self._find(payment_id)
        if record is None:
            raise PaymentNotFoundError(payment_id)
        return record

    async def cancel(self, payment_id: str) -> dict[str, Any]:
        """Ask the terminal to abort; `{was_in_progress, payment}`.

        A terminal that cannot abort from the till raises NotSupportedError whose message tells
        the cashier what to do on the terminal; one that cannot be reached, DeviceNotReadyError.
        Either way the payment ends as the terminal says.
        """
        record = await self.get(payment_id)
        if self._current != payment_id or record["state"] != "in_progress":
            return {"was_in_progress": False, "payment": record}
        log.info("payment_cancel_requested", payment_id=payment_id)
        try:
            await self.terminal.abort()
        except NotSupportedError:
            raise
        except DeviceError as exc:
            status = self.terminal.status
            raise DeviceNotReadyError(status.name, str(status.state), str(exc)) from exc
        return {"was_in_progress": True, "payment": await self.get(payment_id)}

    # -- starting ------------------------------------------------------------------------------

    async def _begin(
        self,
        kind: Kind,
        payment_id: str,
        amount: int,
        currency: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._validate(amount, currency)
        async with self._lock:
            known = await self._find(payment_id)
            if known is not None:
                same = (known["kind"], known["amount"], known["currency"]) == (
                    kind,
                    amount,
                    currency,
                )
                if not same:
                    raise PaymentConflictError(payment_id)
                return known
            if self._current is not None:
                raise PaymentBusyError(self._current)
            tasks = self._ready()
            now = utc_now_iso()
            record: dict[str, Any] = {
                "id": payment_id,
                "kind": kind,
                "amount": amount,
                "currency": currency,
                "state": "in_progress",
                "result": None,
                "message": "starting",
                "created_at": now,
                "updated_at": now,
                **(extra or {}),
            }
            await self._ledger.put_payment(record)  # durable before the terminal hears of it
            self._current = payment_id
            self._live[payment_id] = record
            log.info("payment_started", payment_id=payment_id, kind=kind, amount=amount)
            self._publish("payment", copy.deepcopy(record))
            tasks.create_task(self._authorize(record), name=f"payment-{payment_id}")
            return copy.deepcopy(record)

    def _ready(self) -> asyncio.TaskGroup:
        """The running service's task group, if the terminal can take an operation now."""
        status = self.terminal.status
        if self._tasks is None:
            raise DeviceNotReadyError(status.name, "connecting", "the payment service is starting")
        if status.state is not DeviceState.READY:
            raise DeviceNotReadyError(status.name, str(status.state), status.detail)
        return self._tasks

    def _validate(self, amount: Any, currency: Any) -> None:
        problems = []
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            problems.append(Problem("amount", "must be a positive integer number of minor units"))
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            problems.append(Problem("currency", "must be an ISO 4217 code of three capitals"))
        elif currency != self.currency:
            problems.append(
                Problem("currency", f"the payment terminal takes {self.currency}, not {currency}")
            )
        if problems:
            raise ValidationError(problems)

    async def _authorize(self, record: dict[str, Any]) -> None:
        payment_id = record["id"]

        def progress(text: str) -> None:
            record["message"], record["updated_at"] = text, utc_now_iso()
            self._publish("payment", {"id": payment_id, "state": "in_progress", "message": text})

        result: PaymentResult | None = None
        try:
            if record["kind"] == "reversal":
                result = await self.terminal.reverse(record["terminal_receipt_no"], progress)
            elif record["kind"] == "refund":
                result = await self.terminal.refund(record["amount"], record["currency"], progress)
            else:
                result = await self.terminal.authorize(
                    record["amount"], record["currency"], progress
                )
            state, message = str(result.outcome), result.message or str(result.outcome)
        except (NotSupportedError, DeviceAbsent) as exc:  # refused before anything was sent
            state, message = "aborted", f"{exc}; nothing was charged"
        except DeviceError as exc:
            state, message = "unknown", f"payment terminal: {exc}; {CHECK_RECEIPT}"
        except Exception:  # a driver bug: the card may have been charged all the same
            log.exception("payment_driver_failed", payment_id=payment_id)
            state, message = "unknown", f"payment terminal driver failed; {CHECK_RECEIPT}"
        await self._finish(record, state, message, result)

    async def _finish(
        self, record: dict[str, Any], state: str, message: str, result: PaymentResult | None
    ) -> None:
        payment_id = record["id"]
        record.update(
            state=state,
            message=message,
            result=None if result is None else result.to_dict(),
            updated_at=utc_now_iso(),
        )
        try:
            await self._ledger.put_payment(record)
        except Exception:  # the outcome still reaches the UI; a restart settles the record
            log.exception("payment_record_not_saved", payment_id=payment_id, state=state)
        else:
            self._live.pop(payment_id, None)
        if self.offline.add(record):
            log.info("payment_approved_offline", payment_id=payment_id, amount=record["amount"])
        if state == "approved" and record["kind"] == "reversal":
            self.offline.reversed(record["reverses"])
        if self._current == payment_id:
            self._current = None
        log.info("payment_finished", payment_id=payment_id, state=state)
        self._publish("payment", copy.deepcopy(record))

    async def _find(self, payment_id: str) -> dict[str, Any] | None:
        live = self._live.get(payment_id)
        if live is not None:
            return copy.deepcopy(live)
        return await self._ledger.get_payment(payment_id)

    # -- after a restart -----------------------------------------------------------------------

    async def _resolve_unfinished(self) -> None:
        unfinished = await self._ledger.unfinished_payments()
        if not unfinished:
            return
        self._current = unfinished[-1]["id"]
        last = await self._terminal_last_result()
        settled = await self._ledger.last_settled_result()
        for record in unfinished:
            self._current = record["id"]
            result = None
            if record is not unfinished[-1] or last is None or last.outcome is Outcome.UNKNOWN:
                state, message = "unknown", RESTART_UNKNOWN  # an older one cannot be its last
            elif not _identifies(last):
                state, message = "unknown", RESTART_UNKNOWN  # nothing tells it from an older one
            elif _identity(last.to_dict()) == _identity(settled or {}):
                # Ours never became the terminal's last: it never reached the terminal, or the
                # terminal keeps only its last success and ours was not one.
                state, message = "aborted", NOT_ON_TERMINAL
            elif last.amount == record["amount"] and last.currency == record["currency"]:
                state, result = str(last.outcome), last
                message = f"{last.message or state} (settled with the terminal after a restart)"
            else:
                state, message = "aborted", NOT_ON_TERMINAL
            log.warning("payment_settled_after_restart", payment_id=record["id"], state=state)
            await self._finish(record, state, message, result)
        self._current = None

    async def _terminal_last_result(self) -> PaymentResult | None:
        """The terminal's last transaction; None when it cannot tell or does not answer."""
        deadline = time.monotonic() + RESOLVE_WAIT_S
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    return await self.terminal.last_result()
            except TimeoutError:
                return None
            except DeviceError as exc:
                if time.monotonic() + RESOLVE_RETRY_S >= deadline:
                    log.warning("payment_last_result_unavailable", error=str(exc))
                    return None
            except Exception:
                log.exception("payment_last_result_failed")
                return None
            await asyncio.sleep(RESOLVE_RETRY_S)


def _identity(result: dict[str, Any]) -> tuple[Any, ...]:
    """What tells one terminal transaction from another of the same amount."""
    return (result.get("terminal_id"), result.get("trace_number"), result.get("receipt_no"))


def _identifies(result: PaymentResult) -> bool:
    return result.trace_number is not None or result.receipt_no is not None


__all__ = [
    "PaymentBusyError",
    "PaymentConflictError",
    "PaymentLedger",
    "PaymentNotFoundError",
    "PaymentService",
]
