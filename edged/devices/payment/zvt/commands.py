"""ZVT commands the ECR sends to the PT, sans-IO: built by the driver, read by the simulator.

Building and reading each command side by side keeps the two ends of the line in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edged.devices.payment.zvt.apdu import Apdu
from edged.devices.payment.zvt.errors import error_at
from edged.devices.payment.zvt.fields import (
    BmpValue,
    bcd_decode,
    bcd_digits,
    bcd_encode,
    decode_bmps,
    encode_bmp,
    encode_bmps,
)

CONFIG_ECR_PRINTS_PAYMENT = 0x02
CONFIG_ECR_PRINTS_ADMIN = 0x04
CONFIG_INTERMEDIATE_STATUS = 0x08
CONFIG_ECR_CONTROLS_PAYMENT = 0x10
CONFIG_ECR_CONTROLS_ADMIN = 0x20
CONFIG_PRINT_LINES = 0x80


def password_bcd(password: str) -> bytes:
    """The ECR password (six digits) as the 3 BCD bytes commands carry."""
    if len(password) != 6 or not password.isdigit():
        raise ValueError("the ZVT password must be exactly six digits")
    return bytes.fromhex(password)


def registration(password: str, config: int, currency: int | None) -> Apdu:
    data = password_bcd(password) + bytes([config])
    if currency is not None:
        data += bcd_encode(currency, 2)
    return Apdu(0x06, 0x00, data)


def authorization(amount: int, currency: int | None = None) -> Apdu:
    fields: list[tuple[int, BmpValue]] = [(0x04, amount)]
    if currency is not None:
        fields.append((0x49, currency))
    return Apdu(0x06, 0x01, encode_bmps(fields))


def refund(password: str, amount: int, currency: int | None = None) -> Apdu:
    fields: list[tuple[int, BmpValue]] = [(0x04, amount)]
    if currency is not None:
        fields.append((0x49, currency))
    return Apdu(0x06, 0x31, password_bcd(password) + encode_bmps(fields))


def reversal(password: str, receipt_no: int) -> Apdu:
    return Apdu(0x06, 0x30, password_bcd(password) + encode_bmp(0x87, receipt_no))


def abort_command() -> Apdu:
    return Apdu(0x06, 0xB0)


def status_enquiry(password: str) -> Apdu:
    return Apdu(0x05, 0x01, password_bcd(password))


def repeat_receipt(password: str) -> Apdu:
    return Apdu(0x06, 0x20, password_bcd(password))


def end_of_day(password: str) -> Apdu:
    return Apdu(0x06, 0x50, password_bcd(password))


# --- reading them, on the PT's side (the simulator) --------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """A 06 00 Registration as the PT reads it."""

    password: str
    config: int
    currency: int | None
    values: Mapping[int, BmpValue]


def parse_registration(apdu: Apdu) -> Registration:
    data, base = apdu.data, apdu.data_offset
    if len(data) < 4:
        raise error_at("06 00 needs a password and a config byte", data, len(data), base)
    password = bcd_digits(data[:3], base)
    currency = bcd_decode(data[4:6], base + 4) if len(data) >= 6 else None
    rest = 6 if len(data) >= 6 else 4
    return Registration(password, data[3], currency, decode_bmps(data[rest:], base + rest))


def parse_password_command(apdu: Apdu) -> tuple[str, dict[int, BmpValue]]:
    """Commands that start with the 3-byte password (06 20, 06 30, 06 31, 06 50, 05 01)."""
    data, base = apdu.data, apdu.data_offset
    if len(data) < 3:
        return "", decode_bmps(data, base)
    return bcd_digits(data[:3], base), decode_bmps(data[3:], base + 3)
