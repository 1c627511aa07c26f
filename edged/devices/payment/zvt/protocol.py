"""The ECR's side of one ZVT command, sans-IO, and what its outcome means for a payment.

A command goes out; the PT acknowledges it with 80 00 00 (or refuses it with 84 xx) and then
holds "master rights": it sends intermediate statuses (04 FF), status information (04 0F) and
print lines (06 D1/D3), each of which the ECR acknowledges with 80 00 00, until it hands
control back with Completion (06 0F) or Abort (06 1E). `Conversation` turns each APDU the PT
sends into what the driver must do; the functions below turn the end into a PaymentResult
holding only what DESIGN invariant 6 allows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edged.devices.payment.base import Authorisation, Outcome, PaymentResult
from edged.devices.payment.zvt import codes, currencies, messages
from edged.devices.payment.zvt.apdu import ACK_APDU, Apdu, negative_ack
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.messages import Completion, StatusInfo

FUNCTION_NOT_POSSIBLE = 0x83  # our 84 83 00 answer to a PT request we do not support
POSITIVE_84 = (0x00, 0x9C)  # 84 00 and 84 9C ("please wait") also accept a command

NO_ANSWER = "no answer from the payment terminal"


class Phase(enum.Enum):
    SENT = "sent"  # our command is out; waiting for the PT's 80 00 00 or 84 xx
    WORKING = "working"  # the PT holds master rights until 06 0F or 06 1E
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Reply:
    """Send this APDU to the PT now (our acknowledgement of its message)."""

    apdu: Apdu


@dataclass(frozen=True, slots=True)
class Status:
    """An intermediate status for the cashier ("insert card", "enter PIN")."""

    code: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The PT gave control back; the command's outcome as the PT told it."""

    completed: bool  # 06 0F Completion; False for 06 1E Abort or a refused command
    result_code: int | None  # from 06 1E, 84 xx, or the last 04 0F
    info: StatusInfo | None = None  # the last readable 04 0F, PAN already masked
    completion: Completion | None = None
    lines: tuple[str, ...] = ()  # print lines the PT sent (when the ECR prints receipts)
    refused: bool = False  # the PT answered the command itself with 84 xx
    problems: tuple[str, ...] = ()  # messages that could not be read (for the log)


Event = Reply | Status | Finished


class Conversation:
    """One command from send to the PT's final answer; feed it every APDU the PT sends.

    It is lenient the way a field technician needs: a PT message before the 80 00 00 counts as
    the acknowledgement, a 80 00 00 or 84 xx while the PT works answers our abort (06 B0) and
    is ignored, an unreadable status information is acknowledged and reported in `problems`,
    and an unknown request from the PT gets 84 83 00 ("function not possible").
    """

    def __init__(self, command: Apdu) -> None:
        self.command = command
        self.phase = Phase.SENT
        self._info: StatusInfo | None = None
        self._lines: list[str] = []
        self._problems: list[str] = []

    def receive(self, apdu: Apdu) -> list[Event]:
        """The events one APDU from the PT causes, in the order the driver must act on them."""
        if self.phase is Phase.DONE:
            return []
        if apdu.cla == 0x80:
            self.phase = Phase.WORKING
            return []
        if apdu.cla == 0x84:
            if self.phase is Phase.SENT and apdu.ins not in POSITIVE_84:
                return [self._finish(completed=False, code=apdu.ins, refused=True)]
            self.phase = Phase.WORKING
            return []  # while the PT works: it could not honour our abort, it goes on
        self.phase = Phase.WORKING
        return self._pt_message(apdu)

    def _pt_message(self, apdu: Apdu) -> list[Event]:
        ack = Reply(ACK_APDU)
        key = (apdu.cla, apdu.ins)
        if key == (0x04, 0xFF):
            try:
                code = messages.parse_intermediate_status(apdu)
            except ZvtProtocolError as exc:
                self._problems.append(str(exc))
                return [ack]
            return [ack, Status(code, codes.intermediate_text(code))]
        if key == (0x04, 0x0F):
            try:
                self._info = messages.parse_status_information(apdu)
            except ZvtProtocolError as exc:
                self._problems.append(f"status information unreadable: {exc}")
            return [ack]
        if key == (0x06, 0xD1):
            self._lines.append(messages.parse_print_line(apdu))
            return [ack]
        if key == (0x06, 0xD3):
            return [ack]  # a TLV text block; the PT prints its own receipts in our setup
        if key == (0x06, 0x0F):
            completion: Completion | None = None
            try:
                completion = messages.parse_completion(apdu)
            except ZvtProtocolError as exc:
                self._problems.append(f"completion unreadable: {exc}")
            reported = self._info.result_code if self._info else None
            return [ack, self._finish(completed=True, code=reported, completion=completion)]
        if key == (0x06, 0x1E):
            return [ack, self._finish(completed=False, code=messages.parse_abort(apdu))]
        return [Reply(negative_ack(FUNCTION_NOT_POSSIBLE))]

    def _finish(
        self,
        *,
        completed: bool,
        code: int | None,
        refused: bool = False,
        completion: Completion | None = None,
    ) -> Finished:
        self.phase = Phase.DONE
        return Finished(
            completed=completed,
            result_code=code,
            info=self._info,
            completion=completion,
            lines=tuple(self._lines),
            refused=refused,
            problems=tuple(self._problems),
        )


def _result(
    outcome: Outcome, amount: int, currency: str, code: int, info: StatusInfo | None
) -> PaymentResult:
    """Only the fields invariant 6 allows: the PAN arrives here already masked."""
    return PaymentResult(
        outcome=outcome,
        amount=amount,
        currency=currency,
        result_code=code,
        message=_message(outcome, code),
        masked_pan=info.masked_pan if info else None,
        card_name=info.card_name if info else None,
        auth_code=info.auth_code if info else None,
        trace_number=info.trace_number if info else None,
        terminal_id=info.terminal_id if info else None,
        receipt_no=info.receipt_no if info else None,
        authorisation=info.authorisation if info else Authorisation.UNKNOWN,
    )


def _outcome_of(code: int) -> Outcome:
    if code == 0:
        return Outcome.APPROVED
    return Outcome.ABORTED if code == codes.ABORTED_BY_USER else Outcome.DECLINED


def _message(outcome: Outcome, code: int) -> str:
    if outcome is Outcome.APPROVED:
        return "approved"
    if outcome is Outcome.ABORTED:
        return "aborted: cancelled at the till or on the terminal, or the cardholder timed out"
    return f"declined: {codes.result_text(code)}"


def payment_result(finished: Finished, amount: int, currency: str) -> PaymentResult:
    """The result of an authorization, refund or reversal as the PT reported it.

    06 0F means success unless the status information carried a non-zero result code; 06 1E
    with 0x6C is an abort, any other code a decline; a refused command (84 xx) is a decline
    that never reached the card. The amount is the PT's when it reported one.
    """
    info = finished.info
    if finished.refused:
        code = finished.result_code if finished.result_code is not None else 0xFF
        return PaymentResult(
            outcome=Outcome.DECLINED,
            amount=amount,
            currency=currency,
            result_code=code,
            message=f"declined: the terminal refused the command ({codes.result_text(code)})",
        )
    if finished.completed:
        code = finished.result_code or 0
    elif finished.result_code is None:
        code = 0xFF
    else:
        code = finished.result_code
    if not finished.completed and code == 0:
        code = 0xFF  # an abort that claims success is still an abort
    reported = info.amount if info is not None and info.amount is not None else amount
    return _result(_outcome_of(code), reported, currency, code, info)


def transaction_result(info: StatusInfo, currency: str) -> PaymentResult:
    """The PT's record of a past transaction (repeat receipt) as a PaymentResult."""
    code = info.result_code or 0
    reported = currencies.currency_code(info.currency) if info.currency is not None else None
    return _result(_outcome_of(code), info.amount or 0, reported or currency, code, info)


def unknown_result(amount: int, currency: str, reason: str) -> PaymentResult:
    """Nobody knows whether the card was charged: ask the PT before charging again."""
    return PaymentResult(
        outcome=Outcome.UNKNOWN,
        amount=amount,
        currency=currency,
        message=f"{reason}; ask the terminal for its last transaction before charging again",
    )
