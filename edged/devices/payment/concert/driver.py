"""ConcertTerminal: an Ingenico Telium terminal in Concert E+ mode, over serial/USB CDC.

What Concert E+ cannot do, and what the driver does about it:
- abort: there is no cancel message. The cashier presses the red key on the terminal; the
  terminal then answers the pending request. `abort()` raises NotSupported saying so.
- last_result: there is no "repeat last transaction". `last_result()` returns None, so a payment
  left open by a restart is reported as unknown (check the terminal's last receipt).
- reversal and end of day: not in the protocol; they raise NotSupported. Refund instead
  (transaction type '2'); the terminal closes its batch (télécollecte) on its own schedule.

The session keeps the line open and is its only reader: one loop feeds the sans-IO EcrLink,
writes what it says, and runs its timers, so a cancelled caller never cuts a frame in half.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import serial
import structlog

from edged.devices.payment.base import Authorisation, Outcome, PaymentResult, Progress
from edged.devices.payment.concert.codec import (
    AUTHORIZATION_FORCED,
    AUTHORIZATION_TERMINAL_DECIDES,
    CURRENCY_ALPHA,
    CURRENCY_NUMERIC,
    DEVICE,
    MAX_AMOUNT,
    Answer,
    AnswerFlag,
    Request,
    Status,
    TransactionType,
)
from edged.devices.payment.concert.link import (
    Alive,
    AnswerReceived,
    EcrLink,
    Event,
    NotStarted,
    Phase,
    RequestAccepted,
    Unresolved,
    Wait,
)
from edged.devices.serialport import close_stream, open_serial
from edged.devices.state import (
    DeviceAbsent,
    DeviceError,
    DeviceGone,
    DeviceState,
    DeviceStatus,
)
from edged.devices.supervisor import keep_open
from edged.errors import NotSupportedError

log = structlog.get_logger(__name__)

REPLY_TIMEOUT_S = 3.0  # per read: ACK after ENQ or a frame, a frame after ACK, EOT
ENQ_PAUSE_S = 1.0  # between ENQ attempts the terminal did not take
ANSWER_TIMEOUT_S = 180.0  # the cardholder inserts the card, types the PIN, the bank answers
PROBE_INTERVAL_S = 5.0  # while the terminal does not answer: ENQ/EOT this often
READ_CHUNK = 256
OUTCOME_MARGIN_S = 60.0  # beyond the link's own timers: a bound against a bug, not a protocol time

NO_ANSWER = "no answer from the payment terminal"
CHECK_RECEIPT = "check the terminal's last receipt before charging again"


class NotSupported(DeviceError, NotSupportedError):
    """Concert E+ has no message for this; the text says what to do instead."""


@dataclass(frozen=True, slots=True)
class ConcertSettings:
    """Line and protocol settings; the defaults suit an Ingenico on USB (/dev/ttyACM0)."""

    path: str = "/dev/ttyACM0"
    baudrate: int = 9600
    bytesize: int = 8  # 7 with even parity on a native RS-232 port
    parity: str = "none"
    stopbits: int = 1
    currency: str = "EUR"
    pos_number: str = "01"
    payment_mode: str = "1"  # card
    pan_report: bool = False  # answer flag '1': the terminal sends the card number (masked here)
    force_authorization: bool = False  # 'B011': ask the bank even below the floor limit
    reply_timeout_s: float = REPLY_TIMEOUT_S
    enq_pause_s: float = ENQ_PAUSE_S
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    probe_interval_s: float = PROBE_INTERVAL_S

    def __post_init__(self) -> None:
        if self.currency not in CURRENCY_NUMERIC:
            known = ", ".join(sorted(CURRENCY_NUMERIC))
            raise ValueError(f"Concert currency {self.currency!r} is not known; known: {known}")
        # Request() checks the POS number and payment mode and says what is wrong.
        Request(0, CURRENCY_NUMERIC[self.currency], self.pos_number, payment_mode=self.payment_mode)


class ConcertTerminal:
    """PaymentTerminal over Concert E+. One operation at a time."""

    def __init__(self, status: DeviceStatus, settings: ConcertSettings | None = None) -> None:
        self.settings = settings = settings or ConcertSettings()
        self.currency = settings.currency
        self.status = status
        self._link = EcrLink(DEVICE)
        self._writer: asyncio.StreamWriter | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._outcome: asyncio.Future[Event] | None = None
        self._progress: Progress | None = None
        self._needs_probe = True

    async def run(self) -> None:
        """Keep the line open; reopen with backoff after an unplug (never returns)."""
        await keep_open(self.status, self._session)

    async def authorize(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        return await self._transact(TransactionType.DEBIT, amount, currency, progress)

    async def refund(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        return await self._transact(TransactionType.REFUND, amount, currency, progress)

    async def reverse(self, receipt_no: int, progress: Progress) -> PaymentResult:
        raise NotSupported(
            "Concert E+ has no reversal: refund the amount instead, "
            "or cancel the transaction in the terminal's own menu"
        )

    async def abort(self) -> None:
        """Nothing to send: Concert E+ has no cancel message. Raises while a payment runs."""
        if self._outcome is not None or self._link.busy:
            raise NotSupported(
                "Concert E+ cannot cancel from the till: press the red cancel key on the "
                "payment terminal; the payment then ends as declined"
            )

    async def last_result(self) -> PaymentResult | None:
        """Always None: Concert E+ cannot repeat its last transaction."""
        return None

    async def end_of_day(self, progress: Progress) -> dict[str, Any]:
        raise NotSupported(
            "Concert E+ cannot close the batch from the till: the terminal sends its "
            "transactions to the bank (télécollecte) on its own schedule or from its menu"
        )

    # -- one payment ---------------------------------------------------------------------------

    async def _transact(
        self, kind: TransactionType, amount: int, currency: str, progress: Progress
    ) -> PaymentResult:
        if currency != self.currency:
            raise NotSupported(
                f"this payment terminal is set up for {self.currency}, not {currency}"
            )
        if not 0 < amount <= MAX_AMOUNT:
            raise NotSupported(f"Concert E+ carries amounts of 1 to {MAX_AMOUNT} minor units")
        async with self._lock:
            if self._writer is None:
                where = f"{self.status.state}: {self.status.detail}"
                if self.status.state is DeviceState.ABSENT:
                    raise DeviceAbsent(f"the payment terminal is not connected ({where})")
                raise DeviceError(f"the payment terminal is not connected ({where})")
            if self._link.busy:  # a cancelled caller's payment is still running on the terminal
                return PaymentResult(
                    Outcome.ABORTED,
                    amount,
                    currency,
                    message="the terminal is still busy with an earlier payment; "
                    "nothing was charged",
                )
            request = Request(
                amount=amount,
                currency_numeric=CURRENCY_NUMERIC[currency],
                pos_number=self.settings.pos_number,
                answer_flag=AnswerFlag.WITH_REPORT
                if self.settings.pan_report
                else AnswerFlag.SHORT,
                payment_mode=self.settings.payment_mode,
                transaction_type=kind,
                authorization=AUTHORIZATION_FORCED
                if self.settings.force_authorization
                else AUTHORIZATION_TERMINAL_DECIDES,
            )
            outcome: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
            self._outcome, self._progress = outcome, progress
            log.info("payment_request", device=self.status.name, kind=kind.name, amount=amount)
            self.status.set(DeviceState.BUSY, "payment in progress")
            self._link.start_request(request.encode())
            self._wake.set()
            try:
                async with asyncio.timeout(self._bound_s()):
                    event = await outcome
            except TimeoutError:
                event = Unresolved("the driver stopped waiting", silent=True)
            finally:
                self._outcome = self._progress = None
        result = _result(event, request, currency)
        log.info(
            "payment_result",
            device=self.status.name,
            outcome=str(result.outcome),
            result_code=result.result_code,
            amount=result.amount,
        )
        return result

    def _bound_s(self) -> float:
        s = self.settings
        return (
            s.answer_timeout_s
            + 3 * (s.reply_timeout_s + s.enq_pause_s)
            + 6 * s.reply_timeout_s
            + OUTCOME_MARGIN_S
        )

    # -- the open line -------------------------------------------------------------------------

    async def _session(self) -> None:
        s = self.settings
        reader, writer = await open_serial(
            s.path, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits
        )
        self._link = EcrLink(DEVICE)
        self._writer = writer
        self._needs_probe = True
        self.status.set(DeviceState.CONNECTING, f"{s.path} open; waiting for the terminal")
        try:
            await self._serve(reader, writer)
        finally:
            self._writer = None
            lost = self._link.abandon()
            if lost is not None:
                self._on_event(lost)
            await close_stream(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = self.status.name
        read = asyncio.create_task(reader.read(READ_CHUNK), name=f"{name}-read")
        wake = asyncio.create_task(self._wake.wait(), name=f"{name}-wake")
        timer: tuple[int, bool] | None = None
        deadline: float | None = None
        try:
            while True:
                if self._link.phase is Phase.IDLE and self._needs_probe and deadline is None:
                    self._link.start_probe()
                self._send(writer)
                if timer != (self._link.timer_epoch, self._needs_probe):
                    timer = (self._link.timer_epoch, self._needs_probe)
                    deadline = self._deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait(
                    {read, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if wake in done:
                    self._wake.clear()
                    wake = asyncio.create_task(self._wake.wait(), name=f"{name}-wake")
                    continue
                if read in done:
                    try:
                        data = read.result()
                    except (serial.SerialException, OSError) as exc:
                        raise DeviceGone(f"{self.settings.path}: connection lost ({exc})") from exc
                    if not data:
                        raise DeviceGone(f"{self.settings.path}: the line was closed")
                    read = asyncio.create_task(reader.read(READ_CHUNK), name=f"{name}-read")
                    events = self._link.receive_data(data)
                elif self._link.wait is Wait.NONE:
                    deadline = None  # probe time: the loop's top sends ENQ
                    continue
                else:
                    events = self._link.timed_out()
                self._send(writer)
                for event in events:
                    self._on_event(event)
        finally:
            for task in (read, wake):
                task.cancel()
            await asyncio.gather(read, wake, return_exceptions=True)

    def _send(self, writer: asyncio.StreamWriter) -> None:
        if out := self._link.data_to_send():
            writer.write(out)

    def _deadline(self) -> float | None:
        s = self.settings
        wait = self._link.wait
        if wait is Wait.NONE:
            seconds = s.probe_interval_s if self._needs_probe else None
        else:
            seconds = {
                Wait.REPLY: s.reply_timeout_s,
                Wait.PAUSE: s.enq_pause_s,
                Wait.CARDHOLDER: s.answer_timeout_s,
            }[wait]
        return None if seconds is None else time.monotonic() + seconds

    def _on_event(self, event: Event) -> None:
        name = self.status.name
        match event:
            case Alive():
                self._needs_probe = False
                if self._outcome is None:
                    self.status.set(DeviceState.READY, "idle")
            case NotStarted(probe=True) as failed:
                self._needs_probe = True
                self.status.set(DeviceState.ERROR, _probe_detail(failed))
            case RequestAccepted():
                self._tell("waiting for the cardholder on the terminal")
            case AnswerReceived(solicited=False) as late:
                # A payment the till stopped waiting for ended after all: for reconciliation.
                log.warning(
                    "payment_late_answer",
                    device=name,
                    status=late.answer.status,
                    amount=late.answer.amount,
                )
                self._idle_again()
            case Unresolved(solicited=False) as lost:
                log.warning("payment_late_answer_unreadable", device=name, reason=lost.reason)
            case NotStarted() | Unresolved() | AnswerReceived():
                silent = isinstance(event, NotStarted | Unresolved) and event.silent
                if silent:
                    self._needs_probe = True
                    self.status.set(DeviceState.ERROR, NO_ANSWER)
                else:
                    self._idle_again()
                if self._outcome is not None and not self._outcome.done():
                    self._outcome.set_result(event)
                else:
                    kind = type(event).__name__
                    log.warning("payment_outcome_unclaimed", device=name, event=kind)

    def _idle_again(self) -> None:
        self._needs_probe = False
        self.status.set(DeviceState.READY, "idle")

    def _tell(self, text: str) -> None:
        if self._progress is None:
            return
        try:
            self._progress(text)
        except Exception:
            log.exception("payment_progress_failed", device=self.status.name)


def _probe_detail(failed: NotStarted) -> str:
    what = NO_ANSWER if failed.silent else "the payment terminal does not take requests"
    return (
        f"{what} ({failed.reason}); check that it is on and that Cash Connection is On "
        "(USB) in its Telium Manager settings"
    )


def _result(event: Event, request: Request, currency: str) -> PaymentResult:
    """What the till may keep of the terminal's answer (no report, only the masked PAN)."""
    if isinstance(event, AnswerReceived):
        return _answer_result(event.answer, request, currency)
    if isinstance(event, NotStarted):
        why = (
            f"{NO_ANSWER} ({event.reason})"
            if event.silent
            else f"the payment terminal refused the request ({event.reason})"
        )
        return PaymentResult(
            Outcome.ABORTED, request.amount, currency, message=f"{why}; nothing was charged"
        )
    assert isinstance(event, Unresolved), event  # the link ends a request with these three
    why = (
        f"{NO_ANSWER} ({event.reason})"
        if event.silent
        else f"the terminal's answer could not be read ({event.reason})"
    )
    return PaymentResult(
        Outcome.UNKNOWN, request.amount, currency, message=f"{why}: {CHECK_RECEIPT}"
    )


def _answer_result(answer: Answer, request: Request, currency: str) -> PaymentResult:
    answered_currency = CURRENCY_ALPHA.get(answer.currency_numeric, answer.currency_numeric)
    if answer.status == Status.SUCCESS:
        outcome, message = Outcome.APPROVED, "approved"
        if answer.amount != request.amount or answered_currency != currency:
            message = (
                f"approved for {answer.amount} {answered_currency}, "
                f"not the {request.amount} {currency} asked for"
            )
            log.warning("payment_amount_differs", asked=request.amount, approved=answer.amount)
    elif answer.status == Status.REJECTED:
        outcome, message = Outcome.DECLINED, "declined by the terminal or the card's bank"
    else:  # 9 is "not verified" in pyTeliumManager, with no public meaning: never a success
        outcome = Outcome.UNKNOWN
        message = f"the terminal answered status {answer.status}: {CHECK_RECEIPT}"
    return PaymentResult(
        outcome,
        answer.amount,
        answered_currency,
        result_code=answer.status,
        message=message,
        masked_pan=answer.masked_pan,
        # The E+ answer (status, amount, mode, report, currency, private) never says who
        # approved: an offline approval cannot be told from an online one (README).
        authorisation=Authorisation.UNKNOWN,
    )


__all__ = ["ConcertSettings", "ConcertTerminal", "NotSupported"]
