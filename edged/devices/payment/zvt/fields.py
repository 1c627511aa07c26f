"""ZVT BMP fields, sans-IO: the tag table, BCD numbers and LLVAR lengths, both ways.

Card data is defended here: a PAN (BMP 22) is masked the moment it is decoded, and track,
CVV, PIN, chip and expiry data are parsed for their length and then dropped, so no caller
ever holds them (DESIGN invariant 6).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edged.devices.payment.base import mask_pan
from edged.devices.payment.zvt.errors import error_at
from edged.devices.payment.zvt.tlv import Tlv, ber_length, decode_tlv, encode_tlv, read_ber_length

TEXT_ENCODING = "cp437"  # the ZVT default character set; decodes any byte


# --- BCD ---------------------------------------------------------------------------------


def bcd_encode(value: int, size: int) -> bytes:
    """`value` as `size` bytes of packed BCD, most significant digit first."""
    if value < 0 or value >= 10 ** (2 * size):
        raise ValueError(f"{value} does not fit in {size} BCD bytes")
    return bytes.fromhex(f"{value:0{2 * size}d}")


def bcd_digits(data: bytes, base: int = 0) -> str:
    """The decimal digits of packed BCD; ZvtProtocolError names a nibble that is no digit."""
    text = data.hex()
    for index, nibble in enumerate(text):
        if not nibble.isdigit():
            raise error_at(f"BCD nibble {nibble.upper()} is not a digit", data, index // 2, base)
    return text


def bcd_decode(data: bytes, base: int = 0) -> int:
    return int(bcd_digits(data, base)) if data else 0


# --- BMP fields --------------------------------------------------------------------------


class Kind(enum.Enum):
    BYTE = "byte"  # one binary byte -> int
    BCD = "bcd"  # fixed-size BCD number -> int (all 0xFF means "none" and is left out)
    DIGITS = "digits"  # fixed-size BCD kept as digits -> str (time, date, terminal id)
    TEXT = "text"  # fixed-size text, space or NUL padded -> str
    BINARY = "binary"  # fixed-size opaque bytes
    LLVAR = "llvar"  # length Fx Fy, then text -> str
    LLLVAR = "lllvar"  # length Fx Fy Fz, then text -> str
    LLVAR_BINARY = "llvar_binary"
    LLLVAR_BINARY = "lllvar_binary"
    PAN = "pan"  # LLVAR of BCD digits, E = masked digit, F = padding -> masked str
    TLV = "tlv"  # BER length, then TLV items -> tuple[Tlv, ...]


@dataclass(frozen=True, slots=True)
class BmpSpec:
    name: str
    kind: Kind
    size: int = 0  # for the fixed-size kinds
    secret: bool = False  # card data: parsed for its length, never kept


BmpValue = int | str | bytes | tuple[Tlv, ...]

# Tags and lengths as in the spec's "summary of utilised BMPs" (read via wirelane/ecrterm,
# Portalum.Zvt, the Rust `zvt` crate and Wireshark's packet-zvt.c). An unknown tag stops the
# parse: its length cannot be guessed.
BMPS: Mapping[int, BmpSpec] = {
    0x01: BmpSpec("timeout", Kind.BYTE),
    0x02: BmpSpec("max_status_infos", Kind.BYTE),
    0x03: BmpSpec("service_byte", Kind.BYTE),
    0x04: BmpSpec("amount", Kind.BCD, 6),
    0x05: BmpSpec("pump_no", Kind.BYTE),
    0x06: BmpSpec("tlv", Kind.TLV),
    0x0B: BmpSpec("trace_number", Kind.BCD, 3),
    0x0C: BmpSpec("time", Kind.DIGITS, 3),
    0x0D: BmpSpec("date", Kind.DIGITS, 2),
    0x0E: BmpSpec("expiry", Kind.DIGITS, 2, secret=True),
    0x17: BmpSpec("card_seq_no", Kind.BCD, 2),
    0x19: BmpSpec("payment_type", Kind.BYTE),
    0x22: BmpSpec("pan", Kind.PAN),
    0x23: BmpSpec("track_2", Kind.LLVAR_BINARY, secret=True),
    0x24: BmpSpec("track_3", Kind.LLLVAR_BINARY, secret=True),
    0x27: BmpSpec("result_code", Kind.BYTE),
    0x29: BmpSpec("terminal_id", Kind.DIGITS, 4),
    0x2A: BmpSpec("vu_number", Kind.TEXT, 15),
    0x2D: BmpSpec("track_1", Kind.LLVAR_BINARY, secret=True),
    0x2E: BmpSpec("sync_chip_data", Kind.LLLVAR_BINARY, secret=True),
    0x37: BmpSpec("original_trace_number", Kind.BCD, 3),
    0x3A: BmpSpec("cvv", Kind.BINARY, 2, secret=True),
    0x3B: BmpSpec("auth_code", Kind.TEXT, 8),
    0x3C: BmpSpec("additional_text", Kind.LLLVAR),
    0x3D: BmpSpec("password", Kind.DIGITS, 3, secret=True),
    0x49: BmpSpec("currency", Kind.BCD, 2),
    0x60: BmpSpec("totals", Kind.LLLVAR_BINARY),
    0x87: BmpSpec("receipt_no", Kind.BCD, 2),
    0x88: BmpSpec("turnover_no", Kind.BCD, 3),
    0x8A: BmpSpec("card_type", Kind.BYTE),
    0x8B: BmpSpec("card_name", Kind.LLVAR),
    0x8C: BmpSpec("card_type_id", Kind.BYTE),
    0x92: BmpSpec("offline_chip_data", Kind.LLLVAR_BINARY, secret=True),
    0x9A: BmpSpec("geldkarte_record", Kind.LLLVAR_BINARY, secret=True),
    0xA0: BmpSpec("result_code_as", Kind.BYTE),
    0xA7: BmpSpec("chip_data", Kind.LLVAR_BINARY, secret=True),
    0xAA: BmpSpec("date_full", Kind.DIGITS, 3),
    0xAF: BmpSpec("ef_info", Kind.LLLVAR_BINARY, secret=True),
    0xBA: BmpSpec("aid_parameter", Kind.BINARY, 5),
    0xD0: BmpSpec("algorithm_key", Kind.BYTE),
    0xD1: BmpSpec("pin_data", Kind.LLVAR_BINARY, secret=True),
    0xD2: BmpSpec("card_direction", Kind.BYTE),
    0xD3: BmpSpec("key_position", Kind.BYTE),
    0xE0: BmpSpec("input_min_length", Kind.BYTE),
    **{0xE0 + n: BmpSpec(f"text2_line{n}", Kind.LLVAR) for n in range(1, 9)},
    0xE9: BmpSpec("input_max_length", Kind.BYTE),
    0xEA: BmpSpec("input_echo", Kind.BYTE),
    0xEB: BmpSpec("mac", Kind.BINARY, 8),
    0xF0: BmpSpec("display_duration", Kind.BYTE),
    **{0xF0 + n: BmpSpec(f"text1_line{n}", Kind.LLVAR) for n in range(1, 9)},
    0xF9: BmpSpec("beeps", Kind.BYTE),
    0xFA: BmpSpec("card_reader_activation", Kind.BYTE),
    0xFB: BmpSpec("ok_required", Kind.BYTE),
    0xFC: BmpSpec("dialog_control", Kind.BYTE),
    0xFD: BmpSpec("display_device", Kind.BYTE),
}

_FIXED_KINDS = (Kind.BCD, Kind.DIGITS, Kind.TEXT, Kind.BINARY)
_VAR_DIGITS = {
    Kind.LLVAR: 2,
    Kind.LLVAR_BINARY: 2,
    Kind.PAN: 2,
    Kind.LLLVAR: 3,
    Kind.LLLVAR_BINARY: 3,
}


def var_header(size: int, digits: int) -> bytes:
    """The length of an LLVAR (2 digits) or LLLVAR (3 digits) field, one F0-F9 byte a digit."""
    if size >= 10**digits:
        raise ValueError(f"{size} bytes do not fit an L{'L' * digits}VAR field")
    return bytes(0xF0 | int(d) for d in f"{size:0{digits}d}")


def read_var_length(data: bytes, i: int, digits: int, base: int, name: str) -> tuple[int, int]:
    """(size, index after the length) of the LLVAR or LLLVAR length at `data[i]`."""
    size = 0
    for k in range(i, i + digits):
        if k >= len(data):
            raise error_at(f"{name}: length cut short", data, k, base)
        if data[k] & 0xF0 != 0xF0 or data[k] & 0x0F > 9:
            raise error_at(f"{name}: length byte is not of the form F0-F9", data, k, base)
        size = size * 10 + (data[k] & 0x0F)
    return size, i + digits


def _encode_pan(pan: str) -> bytes:
    nibbles = "".join("E" if c in "*E" else c for c in pan)
    if not all(c.isdigit() or c == "E" for c in nibbles):
        raise ValueError("a PAN is digits, with '*' or 'E' for masked digits")
    if len(nibbles) % 2:
        nibbles += "F"
    return bytes.fromhex(nibbles)


def _decode_pan(raw: bytes, base: int) -> str:
    nibbles = raw.hex().upper()
    kept: list[str] = []
    for index, nibble in enumerate(nibbles):
        if nibble.isdigit():
            kept.append(nibble)
        elif nibble == "E":
            kept.append("*")
        elif not (nibble == "F" and index == len(nibbles) - 1):
            raise error_at(f"PAN nibble {nibble} is neither a digit nor E/F", raw, index // 2, base)
    return mask_pan("".join(kept))


def encode_bmp(tag: int, value: BmpValue) -> bytes:
    """One BMP field: its tag, its length where it has one, and its value."""
    spec = BMPS.get(tag)
    if spec is None:
        raise ValueError(f"unknown BMP 0x{tag:02X}")
    kind = spec.kind
    if kind is Kind.BYTE and isinstance(value, int):
        body = bytes([value])
    elif kind is Kind.BCD and isinstance(value, int):
        body = bcd_encode(value, spec.size)
    elif kind is Kind.DIGITS and isinstance(value, str):
        if len(value) != 2 * spec.size or not value.isdigit():
            raise ValueError(f"BMP 0x{tag:02X} ({spec.name}) takes {2 * spec.size} digits")
        body = bytes.fromhex(value)
    elif kind is Kind.TEXT and isinstance(value, str):
        raw = value.encode(TEXT_ENCODING)
        if len(raw) > spec.size:
            raise ValueError(f"BMP 0x{tag:02X} ({spec.name}) takes at most {spec.size} bytes")
        body = raw.ljust(spec.size, b" ")
    elif kind is Kind.BINARY and isinstance(value, bytes):
        if len(value) != spec.size:
            raise ValueError(f"BMP 0x{tag:02X} ({spec.name}) takes {spec.size} bytes")
        body = value
    elif kind in (Kind.LLVAR, Kind.LLLVAR) and isinstance(value, str):
        raw = value.encode(TEXT_ENCODING)
        body = var_header(len(raw), _VAR_DIGITS[kind]) + raw
    elif kind in (Kind.LLVAR_BINARY, Kind.LLLVAR_BINARY) and isinstance(value, bytes):
        body = var_header(len(value), _VAR_DIGITS[kind]) + value
    elif kind is Kind.PAN and isinstance(value, str):
        raw = _encode_pan(value)
        body = var_header(len(raw), 2) + raw
    elif kind is Kind.TLV and isinstance(value, tuple):
        raw = encode_tlv(value)
        body = ber_length(len(raw)) + raw
    else:
        raise TypeError(f"BMP 0x{tag:02X} ({spec.name}) cannot hold a {type(value).__name__}")
    return bytes([tag]) + body


def encode_bmps(fields: Iterable[tuple[int, BmpValue]]) -> bytes:
    return b"".join(encode_bmp(tag, value) for tag, value in fields)


def decode_bmps(data: bytes, base: int = 0) -> dict[int, BmpValue]:
    """BMP fields by tag, PAN masked and secret fields dropped; `base` offsets the errors."""
    values: dict[int, BmpValue] = {}
    i = 0
    while i < len(data):
        tag = data[i]
        spec = BMPS.get(tag)
        if spec is None:
            raise error_at(f"unknown BMP 0x{tag:02X}: its length cannot be known", data, i, base)
        value, i = _decode_field(spec, tag, data, i + 1, base)
        if value is not None and not spec.secret:
            values[tag] = value
    return values


def _decode_field(
    spec: BmpSpec, tag: int, data: bytes, i: int, base: int
) -> tuple[BmpValue | None, int]:
    name = f"BMP 0x{tag:02X} ({spec.name})"
    kind = spec.kind
    if kind is Kind.BYTE:
        if i >= len(data):
            raise error_at(f"{name} has no value", data, i, base)
        return data[i], i + 1
    if kind in _FIXED_KINDS:
        end = i + spec.size
        if end > len(data):
            raise error_at(f"{name} needs {spec.size} bytes, {len(data) - i} left", data, i, base)
        return _decode_fixed(spec, data[i:end], base + i), end
    if kind is Kind.TLV:
        size, start = read_ber_length(data, i, base)
        if start + size > len(data):
            raise error_at(f"{name} declares {size} bytes, {len(data) - start} left", data, i, base)
        return decode_tlv(data[start : start + size], base + start), start + size
    size, start = read_var_length(data, i, _VAR_DIGITS[kind], base, name)
    end = start + size
    if end > len(data):
        raise error_at(f"{name} declares {size} bytes, {len(data) - start} left", data, i, base)
    raw = data[start:end]
    if spec.secret:
        return None, end
    if kind is Kind.PAN:
        return _decode_pan(raw, base + start), end
    if kind in (Kind.LLVAR, Kind.LLLVAR):
        return raw.decode(TEXT_ENCODING), end
    return raw, end


def _decode_fixed(spec: BmpSpec, raw: bytes, base: int) -> BmpValue | None:
    if spec.secret:
        return None
    if spec.kind is Kind.BCD:
        if raw == b"\xff" * len(raw):
            return None
        return bcd_decode(raw, base)
    if spec.kind is Kind.DIGITS:
        return bcd_digits(raw, base)
    if spec.kind is Kind.TEXT:
        return raw.decode(TEXT_ENCODING).strip("\x00 ")
    return raw
