"""`ZvtTerminal`: a ZVT card terminal behind the PaymentTerminal interface, serial or TCP.

Each (re)connect registers the ECR (06 00: password, config byte, currency) and the device is
READY; an operation makes it BUSY until the PT hands control back. When the PT stops
answering, the payment's outcome is UNKNOWN (nobody knows whether the card was charged), the
device goes to ERROR "no answer from the payment terminal", and keep_open reconnects and
registers again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog

from edged.backoff import Backoff
from edged.devices.payment.base import PaymentResult, Progress
from edged.devices.payment.zvt import codes, commands, currencies, protocol
from edged.devices.payment.zvt.apdu import ACK_APDU, Apdu
from edged.devices.payment.zvt.protocol import NO_ANSWER, Conversation, Finished, Phase
from edged.devices.payment.zvt.transport import (
    DEFAULT_PORT,
    Link,
    LinkRejected,
    NoAnswer,
    SerialTarget,
    Target,
    TcpTarget,
    ZvtTimings,
    open_link,
)
from edged.devices.state import DeviceError, DeviceGone, DeviceState, DeviceStatus
from edged.devices.supervisor import keep_open

log = structlog.get_logger(__name__)

# PT prints its own receipts; the ECR starts payments and wants intermediate statuses.
DEFAULT_CONFIG = commands.CONFIG_INTERMEDIATE_STATUS | commands.CONFIG_ECR_CONTROLS_PAYMENT
MAX_AMOUNT = 10**12 - 1  # six BCD bytes
NOT_REGISTERED = 0x6B  # "function deactivated (PT not registered)": register again


@dataclass(frozen=True, slots=True)
class TerminalReport:
    """What a status enquiry (05 01) says about the PT."""

    terminal_status: int | None
    text: str
    software_version: str | None
    terminal_id: str | None


class ZvtTerminal:
    """A ZVT payment terminal; implements edged.devices.payment.base.PaymentTerminal.

    Give `path` (serial, 9600 8N2 by default) or `host` (TCP, port 20007). One operation runs
    at a time; `abort` is the exception and is sent while a transaction runs.
    """

    def __init__(
        self,
        status: DeviceStatus,
        *,
        path: str | None = None,
        host: str | None = None,
        port: int = DEFAULT_PORT,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "none",
        stopbits: int = 2,
        password: str = "000000",  # noqa: S107 - the PTs' factory default, not a secret
        currency: str = "EUR",
        config: int = DEFAULT_CONFIG,
        timings: ZvtTimings | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if (path is None) == (host is None):
            raise ValueError("a ZVT terminal needs either path (serial) or host (TCP)")
        commands.password_bcd(password)  # a wrong password format fails at start-up
        self.status = status
        self._target: Target = (
            SerialTarget(path, baudrate, bytesize, parity, stopbits)
            if path is not None
            else TcpTarget(host or "", port)
        )
        self._password = password
        self._currency = currency
        self._currency_number = currencies.currency_number(currency)
        self._config = config
        self._timings = timings or ZvtTimings()
        self._backoff = backoff
        self._link: Link | None = None
        self._lock = asyncio.Lock()  # one exchange with the PT at a time
        self._active: Conversation | None = None  # the card transaction abort() may cancel
        self.terminal_id: str | None = None

    # --- supervision ---------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the terminal connected and registered, forever (edged.devices.supervisor)."""
        await keep_open(self.status, self._session, backoff=self._backoff)

    async def _session(self) -> None:
        async with open_link(self._target, self._timings, self.status.name) as link:
            self.status.set(DeviceState.CONNECTING, "registering with the payment terminal")
            command = commands.registration(self._password, self._config, self._currency_number)
            finished = await self._exchange(link, command, None)
            if not finished.completed:
                reason = (
                    codes.result_text(finished.result_code)
                    if finished.result_code is not None
                    else "no reason given"
                )
                raise DeviceError(
                    f"the payment terminal refused the registration ({reason}); "
                    "check the ZVT password and the currency"
                )
            if finished.completion is not None and finished.completion.terminal_id:
                self.terminal_id = finished.completion.terminal_id
            log.info("zvt_registered", device=self.status.name, terminal_id=self.terminal_id)
            self._link = link
            self.status.set(DeviceState.READY, self._ready_detail())
            try:
                await self._watch(link)
            finally:
                self._link = None
        raise DeviceGone(link.reason)

    async def _watch(self, link: Link) -> None:
        """Wait until the line closes; poll with status enquiries while idle."""
        while not await link.wait_closed(self._timings.enquiry_interval_s):
            if self._lock.locked():
                continue
            try:
                report = await self._enquire(link)
            except DeviceGone:
                return
            except DeviceError as exc:
                link.close(str(exc))
                return
            detail = self._ready_detail()
            if report.terminal_status not in (None, 0):
                detail = f"{detail}: {report.text}" if detail else report.text
            if self.status.state is DeviceState.READY:  # not over an operation's BUSY
                self.status.set(DeviceState.READY, detail)

    def _ready_detail(self) -> str:
        return f"terminal {self.terminal_id}" if self.terminal_id else ""

    # --- PaymentTerminal -----------------------------------------------------------------

    async def authorize(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        """Charge `amount` (06 01); UNKNOWN when the PT stopped answering midway."""
        _check_amount(amount)
        command = commands.authorization(amount, currencies.currency_number(currency))
        return await self._transaction(command, amount, currency, progress, "payment")

    async def refund(self, amount: int, currency: str, progress: Progress) -> PaymentResult:
        """Credit `amount` to a card (06 31)."""
        _check_amount(amount)
        command = commands.refund(self._password, amount, currencies.currency_number(currency))
        return await self._transaction(command, amount, currency, progress, "refund")

    async def reverse(self, receipt_no: int, progress: Progress) -> PaymentResult:
        """Cancel an approved payment by the PT's receipt number (06 30 with BMP 87)."""
        if not 0 <= receipt_no <= 9999:
            raise ValueError("a ZVT receipt number has four digits (0-9999)")
        command = commands.reversal(self._password, receipt_no)
        return await self._transaction(command, 0, self._currency, progress, "reversal")

    async def abort(self) -> None:
        """Send 06 B0 into the running transaction; the PT then ends it with 06 1E 6C.

        The PT decides: once the card is authorized it may finish anyway, and the result says
        so. Without a transaction in progress this does nothing.
        """
        link, active = self._link, self._active
        if link is None or active is None or active.phase is Phase.DONE:
            log.info("zvt_abort_ignored", device=self.status.name, reason="nothing in progress")
            return
        log.info("zvt_abort_sent", device=self.status.name, command=active.command.command)
        await link.send(commands.abort_command())

    async def last_result(self) -> PaymentResult | None:
        """The PT's last transaction, read with Repeat Receipt (06 20).

        The PT answers with the Status-Information (04 0F) of its last receipt. Limits: it is
        the last receipt, not necessarily the payment in question (compare amount, trace and
        receipt numbers); many PTs keep only the last *successful* transaction, so a decline
        or an abort before the card was read leaves no record; and a PT that prints the copy
        without sending 04 0F gives None, as does one that answers 06 1E.
        """
        finished = await self._operation(
            commands.repeat_receipt(self._password), None, "reading the last transaction"
        )
        if not finished.completed or finished.info is None:
            return None
        return protocol.transaction_result(finished.info, self._currency)

    async def end_of_day(self, progress: Progress) -> dict[str, Any]:
        """Close the PT's batch (06 50); returns the total it reported and its receipt lines."""
        finished = await self._operation(
            commands.end_of_day(self._password), progress, "end of day"
        )
        if not finished.completed:
            code = finished.result_code
            reason = codes.result_text(code) if code is not None else "no reason given"
            raise DeviceError(f"the payment terminal could not close its batch: {reason}")
        info = finished.info
        currency = currencies.currency_code(info.currency) if info and info.currency else None
        return {
            "total": info.amount if info else None,
            "currency": currency or self._currency,
            "trace_number": info.trace_number if info else None,
            "result_code": (info.result_code or 0) if info else 0,
            "receipt_lines": list(finished.lines),
        }

    async def status_enquiry(self) -> TerminalReport:
        """Ask the PT how it is (05 01)."""
        link = self._ready_link()
        return await self._enquire(link)

    # --- the work ------------------------------------------------------------------------

    async def _enquire(self, link: Link) -> TerminalReport:
        finished = await self._exchange(link, commands.status_enquiry(self._password), None)
        completion = finished.completion
        code = completion.terminal_status if completion else None
        return TerminalReport(
            terminal_status=code,
            text=codes.terminal_status_text(code) if code is not None else "no status given",
            software_version=completion.software_version if completion else None,
            terminal_id=completion.terminal_id if completion else None,
        )

    async def _transaction(
        self, command: Apdu, amount: int, currency: str, progress: Progress, what: str
    ) -> PaymentResult:
        try:
            finished = await self._operation(
                command, progress, f"{what} in progress", cancellable=True
            )
        except NoAnswer:
            return protocol.unknown_result(amount, currency, NO_ANSWER)
        except DeviceGone as exc:
            reason = f"the connection was lost during the {what} ({exc})"
            return protocol.unknown_result(amount, currency, reason)
        result = protocol.payment_result(finished, amount, currency)
        log.info(
            "zvt_transaction_result",
            device=self.status.name,
            kind=what,
            outcome=str(result.outcome),
            result_code=result.result_code,
            amount=result.amount,
            currency=result.currency,
        )
        return result

    async def _operation(
        self, command: Apdu, progress: Progress | None, busy: str, *, cancellable: bool = False
    ) -> Finished:
        """Run one command while BUSY; on silence the line is dropped and reopened."""
        link = self._ready_link()
        self.status.set(DeviceState.BUSY, busy)
        try:
            finished = await self._exchange(link, command, progress, cancellable=cancellable)
            if finished.refused and finished.result_code == NOT_REGISTERED:
                link.close("the payment terminal lost our registration (it restarted?)")
            return finished
        except NoAnswer:
            self.status.set(DeviceState.ERROR, NO_ANSWER)
            link.close(NO_ANSWER)
            raise
        finally:
            if self._link is link and not link.closed:
                self.status.set(DeviceState.READY, self._ready_detail())

    async def _exchange(
        self, link: Link, command: Apdu, progress: Progress | None, *, cancellable: bool = False
    ) -> Finished:
        """Send `command` and follow the PT until it hands control back.

        LinkRejected only when the PT refused the command itself (it never took it); after
        the command went out, any failure to hear the PT is NoAnswer or DeviceGone.
        """
        async with self._lock:
            return await self._follow(link, command, progress, cancellable)

    async def _follow(
        self, link: Link, command: Apdu, progress: Progress | None, cancellable: bool
    ) -> Finished:
        await self._answer_stale(link)
        if link.closed:  # nothing of the command went out: a plain error, not "unknown"
            raise DeviceError(f"the payment terminal is not ready ({link.reason})")
        conversation = Conversation(command)
        self._active = conversation if cancellable else None
        try:
            await link.send(command)
            log.info("zvt_command_sent", device=self.status.name, command=command.command)
            while True:
                timeout = (
                    self._timings.command_timeout_s
                    if conversation.phase is Phase.SENT
                    else self._timings.result_timeout_s
                )
                apdu = await link.receive(timeout)
                for event in conversation.receive(apdu):
                    if isinstance(event, protocol.Reply):
                        await self._reply(link, event.apdu)
                    elif isinstance(event, protocol.Status):
                        self._progress(progress, event)
                    else:
                        self._log_finished(command, event)
                        return event
        finally:
            self._active = None

    async def _reply(self, link: Link, apdu: Apdu) -> None:
        try:
            await link.send(apdu)
        except LinkRejected as exc:  # the PT took our command but refuses our answers
            log.warning("zvt_reply_rejected", device=self.status.name, error=str(exc))
            raise NoAnswer() from None

    async def _answer_stale(self, link: Link) -> None:
        """Acknowledge late PT messages (e.g. after a timeout) before a new command."""
        for apdu in link.stale():
            log.info("zvt_stale_message", device=self.status.name, command=apdu.command)
            if apdu.cla not in (0x80, 0x84):
                await link.send(ACK_APDU)

    def _progress(self, progress: Progress | None, status: protocol.Status) -> None:
        log.info("zvt_intermediate_status", device=self.status.name, code=status.code)
        if progress is None:
            return
        try:
            progress(status.text)
        except Exception:
            log.exception("zvt_progress_callback_failed", device=self.status.name)

    def _log_finished(self, command: Apdu, finished: Finished) -> None:
        for problem in finished.problems:
            log.warning("zvt_unreadable_message", device=self.status.name, error=problem)
        log.info(
            "zvt_command_finished",
            device=self.status.name,
            command=command.command,
            completed=finished.completed,
            refused=finished.refused,
            result_code=finished.result_code,
        )

    def _ready_link(self) -> Link:
        link = self._link
        if link is None or link.closed:
            raise DeviceError(
                f"the payment terminal is not ready ({self.status.state}: {self.status.detail})"
            )
        return link


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be an integer from 1 to {MAX_AMOUNT} minor units")
