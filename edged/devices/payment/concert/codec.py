"""Telium Concert E+ messages and frames, sans-IO (reference: devices.md section 2).

A frame is STX, an ASCII message, ETX, then the LRC: the XOR of every byte after STX up to
and including ETX. The ECR sends a 34-character request; the terminal answers with 25
characters (short answer) or 80 (answer flag '1': a 55-character report that starts with
the PAN follows the payment mode). The PAN is masked the moment it is parsed and the rest
of the report is dropped unread: nothing here ever holds a full PAN in a field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import reduce
from operator import xor

from edged.devices.payment.base import mask_pan
from edged.devices.state import ProtocolError

STX, ETX, EOT, ENQ, ACK, NAK = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15

DEVICE = "payment terminal (Concert)"
REQUEST_CHARS = 34
SHORT_ANSWER_CHARS = 25
FULL_ANSWER_CHARS = 80
REPORT_CHARS = 55
MAX_FRAME_BYTES = FULL_ANSWER_CHARS + 3  # STX, message, ETX, LRC
MAX_AMOUNT = 99_999_999  # eight digits of minor units

DELAY_AT_END = "A010"  # answer when the transaction is over (not at once: "A011")
AUTHORIZATION_TERMINAL_DECIDES = "B010"
AUTHORIZATION_FORCED = "B011"

# ISO 4217 numeric codes of the currencies a French terminal is set up for; add as needed.
CURRENCY_NUMERIC = {"EUR": "978", "XPF": "953", "CHF": "756", "GBP": "826", "USD": "840"}
CURRENCY_ALPHA = {numeric: alpha for alpha, numeric in CURRENCY_NUMERIC.items()}


class AnswerFlag(enum.StrEnum):
    SHORT = "0"
    WITH_REPORT = "1"  # the answer carries the card number (masked at once by parse_answer)


class TransactionType(enum.StrEnum):
    DEBIT = "0"
    CREDIT = "1"
    REFUND = "2"
    AUTO = "4"


class PaymentMode(enum.StrEnum):
    CARD = "1"
    CHEQUE = "C"
    AMEX = "2"
    OTHER = "0"


class Status(enum.IntEnum):
    SUCCESS = 0
    REJECTED = 7
    NOT_VERIFIED = 9  # pyTeliumManager's name; its exact meaning is not public (UNVERIFIED)


class FrameError(ProtocolError):
    """A frame that cannot be taken (bad LRC, no ETX in time); `skip` bytes are its extent."""

    def __init__(self, message: str, skip: int) -> None:
        self.skip = skip
        super().__init__(message)


def lrc(data: bytes | bytearray) -> int:
    """XOR of `data` (the message and ETX); 0 for nothing."""
    return reduce(xor, data, 0)


def frame(message: bytes) -> bytes:
    """STX message ETX LRC."""
    body = message + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def read_frame(buffer: bytes | bytearray, device: str = DEVICE) -> tuple[bytes, bytes] | None:
    """(message, rest) for the frame at the start of `buffer`; None while it is incomplete.

    Raises FrameError when `buffer` does not start with STX, the LRC is wrong, or no ETX came
    within MAX_FRAME_BYTES; `skip` says how many bytes to drop before looking again.
    """
    if not buffer:
        return None
    if buffer[0] != STX:
        raise FrameError(f"{device}: offset 0: expected STX, got {_hex(buffer[0])}", skip=1)
    end = buffer.find(ETX, 1, MAX_FRAME_BYTES - 1)
    if end < 0:
        if len(buffer) >= MAX_FRAME_BYTES - 1:
            raise FrameError(
                f"{device}: no ETX within {MAX_FRAME_BYTES} bytes of STX "
                f"(offset {MAX_FRAME_BYTES - 2}: {_hex(buffer[MAX_FRAME_BYTES - 2])})",
                skip=len(buffer),
            )
        return None
    if len(buffer) <= end + 1:
        return None
    expected, got = lrc(buffer[1 : end + 1]), buffer[end + 1]
    if got != expected:
        raise FrameError(
            f"{device}: offset {end + 1}: LRC {_hex(got)}, expected {_hex(expected)}",
            skip=end + 2,
        )
    return bytes(buffer[1:end]), bytes(buffer[end + 2 :])


@dataclass(frozen=True, slots=True)
class Request:
    """The ECR's 34-character payment request."""

    amount: int  # minor units
    currency_numeric: str = "978"
    pos_number: str = "01"
    answer_flag: AnswerFlag = AnswerFlag.SHORT
    payment_mode: str = PaymentMode.CARD
    transaction_type: TransactionType = TransactionType.DEBIT
    private: str = " " * 10
    delay: str = DELAY_AT_END
    authorization: str = AUTHORIZATION_TERMINAL_DECIDES

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.amount <= MAX_AMOUNT:
            problems.append(f"amount {self.amount} is not 0..{MAX_AMOUNT} minor units")
        if not (_digits(self.pos_number, 2) and self.pos_number != "00"):
            problems.append(f"POS number {self.pos_number!r} is not '01'..'99'")
        if not _digits(self.currency_numeric, 3):
            problems.append(f"currency {self.currency_numeric!r} is not 3 digits")
        if len(self.payment_mode) != 1 or not _printable(self.payment_mode):
            problems.append(f"payment mode {self.payment_mode!r} is not one character")
        if len(self.private) != 10 or not _printable(self.private):
            problems.append("private field is not 10 printable characters")
        if len(self.delay) != 4 or len(self.authorization) != 4:
            problems.append("delay and authorization are 4 characters each")
        if problems:
            raise ValueError("Concert request: " + "; ".join(problems))

    def encode(self) -> bytes:
        """The 34 message characters (frame() adds STX, ETX and the LRC)."""
        return (
            f"{self.pos_number}{self.amount:08d}{self.answer_flag}{self.payment_mode}"
            f"{self.transaction_type}{self.currency_numeric}{self.private}"
            f"{self.delay}{self.authorization}"
        ).encode("ascii")


def parse_request(message: bytes, device: str = DEVICE) -> Request:
    """The terminal's side: read an ECR request (the simulator uses this)."""
    text = _ascii(message, device)
    if len(text) != REQUEST_CHARS:
        raise ProtocolError(
            f"{device}: request of {len(text)} characters, expected {REQUEST_CHARS}"
        )
    _need_digits(message, 0, 2, device, "POS number")
    _need_digits(message, 2, 10, device, "amount")
    _need_digits(message, 13, 16, device, "currency")
    flag, kind = text[10], text[12]
    if flag not in AnswerFlag._value2member_map_:
        raise _bad(message, 10, device, "answer flag ('0' or '1')")
    if kind not in TransactionType._value2member_map_:
        raise _bad(message, 12, device, "transaction type ('0', '1', '2' or '4')")
    if text[0:2] == "00":
        raise _bad(message, 1, device, "POS number '01'..'99'")
    return Request(
        amount=int(text[2:10]),
        currency_numeric=text[13:16],
        pos_number=text[0:2],
        answer_flag=AnswerFlag(flag),
        payment_mode=text[11],
        transaction_type=TransactionType(kind),
        private=text[16:26],
        delay=text[26:30],
        authorization=text[30:34],
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """The terminal's answer; `masked_pan` is all that is kept of the report."""

    pos_number: str
    status: int
    amount: int  # minor units
    payment_mode: str
    currency_numeric: str
    private: str
    masked_pan: str | None = None


def parse_answer(message: bytes, device: str = DEVICE) -> Answer:
    """Read a short (25) or full (80 characters) answer; masks the PAN of a full one."""
    text = _ascii(message, device)
    if len(text) not in (SHORT_ANSWER_CHARS, FULL_ANSWER_CHARS):
        raise ProtocolError(
            f"{device}: answer of {len(text)} characters, expected {SHORT_ANSWER_CHARS} "
            f"or {FULL_ANSWER_CHARS} (is the answer flag set as the terminal expects?)"
        )
    _need_digits(message, 0, 3, device, "POS number and status")
    _need_digits(message, 3, 11, device, "amount")
    tail = 12 + (REPORT_CHARS if len(text) == FULL_ANSWER_CHARS else 0)
    _need_digits(message, tail, tail + 3, device, "currency")
    masked = None
    if len(text) == FULL_ANSWER_CHARS:
        report = text[12:tail]
        pan = report[: len(report) - len(report.lstrip("0123456789*"))]
        masked = mask_pan(pan) if pan else None
    return Answer(
        pos_number=text[0:2],
        status=int(text[2]),
        amount=int(text[3:11]),
        payment_mode=text[11],
        currency_numeric=text[tail : tail + 3],
        private=text[tail + 3 : tail + 13],
        masked_pan=masked,
    )


def encode_answer(answer: Answer, report: str | None = None) -> bytes:
    """The terminal's side (the simulator): a short answer, or a full one with `report`.

    `report` (starting with the card number) is padded to 55 characters; `answer.masked_pan`
    is not sent, since a real terminal sends the report it has.
    """
    if report is not None and len(report) > REPORT_CHARS:
        raise ValueError(f"report of {len(report)} characters; at most {REPORT_CHARS}")
    middle = "" if report is None else report.ljust(REPORT_CHARS)
    return (
        f"{answer.pos_number}{answer.status}{answer.amount:08d}{answer.payment_mode}"
        f"{middle}{answer.currency_numeric}{answer.private}"
    ).encode("ascii")


def _ascii(message: bytes, device: str) -> str:
    for offset, byte in enumerate(message):
        if not 0x20 <= byte < 0x7F:
            raise _bad(message, offset, device, "a printable ASCII character")
    return message.decode("ascii")


def _need_digits(message: bytes, start: int, end: int, device: str, what: str) -> None:
    for offset in range(start, end):
        if not 0x30 <= message[offset] <= 0x39:
            raise _bad(message, offset, device, f"a digit ({what})")


def _bad(message: bytes, offset: int, device: str, expected: str) -> ProtocolError:
    return ProtocolError(
        f"{device}: message offset {offset}: {_hex(message[offset])}, expected {expected}"
    )


def _digits(text: str, width: int) -> bool:
    return len(text) == width and all("0" <= c <= "9" for c in text)


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def _hex(byte: int) -> str:
    return f"0x{byte:02x}"
