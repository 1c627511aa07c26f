"""ZVT messages the PT sends to the ECR, sans-IO: built by the simulator, read by the driver.

Building and reading each message side by side keeps the two ends of the line in step; what
the driver reads comes out as typed values with the PAN already masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edged.devices.payment.base import Authorisation
from edged.devices.payment.zvt.apdu import Apdu
from edged.devices.payment.zvt.errors import ZvtProtocolError, error_at
from edged.devices.payment.zvt.fields import (
    TEXT_ENCODING,
    BmpValue,
    decode_bmps,
    encode_bmps,
    read_var_length,
    var_header,
)

# BMP 0x19 in the Status-Information after an authorisation: the payment type (PA00P015,
# 3.1.1; README "Offline-approved card payments" cites the sources). 0x70 "PIN payment" is
# left unknown: the spec allows it for EMV chip payments approved online or offline.
PAYMENT_TYPE_OFFLINE = 0x40
PAYMENT_TYPE_CHECKED_NOT_AUTHORISED = 0x50  # card checked by the PT, no authorisation made
PAYMENT_TYPE_ONLINE = 0x60
PAYMENT_TYPE_PIN = 0x70
AUTHORISATION_BY_PAYMENT_TYPE: Mapping[int, Authorisation] = {
    PAYMENT_TYPE_OFFLINE: Authorisation.OFFLINE,
    PAYMENT_TYPE_CHECKED_NOT_AUTHORISED: Authorisation.OFFLINE,
    PAYMENT_TYPE_ONLINE: Authorisation.ONLINE,
}


def authorisation_of(payment_type: int | None) -> Authorisation:
    """What BMP 0x19 says of who approved the payment; UNKNOWN when absent or not telling."""
    if payment_type is None:
        return Authorisation.UNKNOWN
    return AUTHORISATION_BY_PAYMENT_TYPE.get(payment_type, Authorisation.UNKNOWN)


def _int(values: Mapping[int, BmpValue], tag: int) -> int | None:
    value = values.get(tag)
    return value if isinstance(value, int) else None


def _str(values: Mapping[int, BmpValue], tag: int) -> str | None:
    value = values.get(tag)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """A 04 0F Status-Information: what the PT reports about a transaction, PAN masked."""

    result_code: int | None = None
    amount: int | None = None
    currency: int | None = None  # ISO 4217 numeric
    trace_number: int | None = None
    receipt_no: int | None = None
    turnover_no: int | None = None
    terminal_id: str | None = None
    vu_number: str | None = None
    auth_code: str | None = None
    masked_pan: str | None = None
    card_name: str | None = None
    card_type: int | None = None
    card_type_id: int | None = None
    payment_type: int | None = None
    date: str | None = None  # MMDD
    time: str | None = None  # HHMMSS
    additional_text: str | None = None

    @property
    def authorisation(self) -> Authorisation:
        return authorisation_of(self.payment_type)

    @classmethod
    def from_bmps(cls, values: Mapping[int, BmpValue]) -> StatusInfo:
        return cls(
            result_code=_int(values, 0x27),
            amount=_int(values, 0x04),
            currency=_int(values, 0x49),
            trace_number=_int(values, 0x0B),
            receipt_no=_int(values, 0x87),
            turnover_no=_int(values, 0x88),
            terminal_id=_str(values, 0x29),
            vu_number=_str(values, 0x2A),
            auth_code=_str(values, 0x3B),
            masked_pan=_str(values, 0x22),
            card_name=_str(values, 0x8B),
            card_type=_int(values, 0x8A),
            card_type_id=_int(values, 0x8C),
            payment_type=_int(values, 0x19),
            date=_str(values, 0x0D),
            time=_str(values, 0x0C),
            additional_text=_str(values, 0x3C),
        )


def parse_status_information(apdu: Apdu) -> StatusInfo:
    return StatusInfo.from_bmps(decode_bmps(apdu.data, apdu.data_offset))


def parse_intermediate_status(apdu: Apdu) -> int:
    """The status code of a 04 FF (a timeout byte and a TLV container may follow)."""
    if not apdu.data:
        raise ZvtProtocolError("04 FF without a status byte", apdu.data_offset)
    return apdu.data[0]


def parse_abort(apdu: Apdu) -> int | None:
    """The result code of a 06 1E Abort (what may follow it depends on the command)."""
    return apdu.data[0] if apdu.data else None


@dataclass(frozen=True, slots=True)
class Completion:
    """A 06 0F Completion: the PT gives the ECR master rights back."""

    terminal_id: str | None = None
    currency: int | None = None
    status_byte: int | None = None
    software_version: str | None = None  # only after a status enquiry
    terminal_status: int | None = None  # only after a status enquiry


def parse_completion(apdu: Apdu) -> Completion:
    """BMP fields, or (after a status enquiry) an LLLVAR version and a status byte first."""
    data, base = apdu.data, apdu.data_offset
    software: str | None = None
    terminal_status: int | None = None
    i = 0
    if data and data[0] & 0xF0 == 0xF0:  # no BMP tag starts with F: the LLLVAR version
        size, start = read_var_length(data, 0, 3, base, "software version")
        if start + size > len(data):
            raise error_at(f"software version declares {size} bytes", data, 0, base)
        software = data[start : start + size].decode(TEXT_ENCODING).strip()
        i = start + size
        if i < len(data):
            terminal_status, i = data[i], i + 1
    values = decode_bmps(data[i:], base + i)
    return Completion(
        terminal_id=_str(values, 0x29),
        currency=_int(values, 0x49),
        status_byte=_int(values, 0x19),
        software_version=software,
        terminal_status=terminal_status,
    )


def parse_print_line(apdu: Apdu) -> str:
    """The text of a 06 D1 Print-Line (its first byte is the attribute)."""
    return apdu.data[1:].decode(TEXT_ENCODING).rstrip() if apdu.data else ""


# --- building them, on the PT's side (the simulator) -------------------------------------


def intermediate_status(code: int) -> Apdu:
    return Apdu(0x04, 0xFF, bytes([code]))


def status_information(fields: Iterable[tuple[int, BmpValue]]) -> Apdu:
    return Apdu(0x04, 0x0F, encode_bmps(fields))


def completion(fields: Iterable[tuple[int, BmpValue]] = ()) -> Apdu:
    return Apdu(0x06, 0x0F, encode_bmps(fields))


def enquiry_completion(software_version: str, terminal_status: int) -> Apdu:
    raw = software_version.encode(TEXT_ENCODING)
    return Apdu(0x06, 0x0F, var_header(len(raw), 3) + raw + bytes([terminal_status]))


def pt_abort(result_code: int) -> Apdu:
    return Apdu(0x06, 0x1E, bytes([result_code]))


def print_line(text: str, attribute: int = 0x00) -> Apdu:
    return Apdu(0x06, 0xD1, bytes([attribute]) + text.encode(TEXT_ENCODING))
