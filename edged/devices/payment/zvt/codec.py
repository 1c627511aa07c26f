"""ZVT (PA00P015) on the wire, sans-IO: serial frames, APDUs, BCD, BMP fields and code tables.

Pure code over bytes: the driver and the simulator run this same module on the two ends of
the line. Card data is defended here: a PAN (BMP 22) is masked the moment it is decoded, and
track, CVV, PIN, chip and expiry data are parsed for their length and then dropped, so no
caller ever holds them (DESIGN invariant 6).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edged.devices.payment.base import mask_pan
from edged.devices.state import ProtocolError

DLE = 0x10
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15

MAX_DATA_BYTES = 0xFFFF  # the extended length field has two bytes
MAX_APDU_BYTES = 2 + 3 + MAX_DATA_BYTES
MAX_TLV_DEPTH = 8  # nesting of constructed TLV tags we follow before calling it garbage
TEXT_ENCODING = "cp437"  # the ZVT default character set; decodes any byte


class ZvtProtocolError(ProtocolError):
    """Bytes from the other end that break ZVT; names the problem, the offset and the byte."""

    def __init__(self, problem: str, offset: int, byte: int | None = None) -> None:
        self.problem = problem
        self.offset = offset
        self.byte = byte
        where = f"byte 0x{byte:02X}" if byte is not None else "end of data"
        super().__init__(f"ZVT: {problem} (offset {offset}, {where})")


def _fail(problem: str, data: bytes, index: int, base: int) -> ZvtProtocolError:
    byte = data[index] if 0 <= index < len(data) else None
    return ZvtProtocolError(problem, base + index, byte)


# --- CRC-16/KERMIT (reflected poly 0x8408, init 0), low byte first on the wire ------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT of `data` (check value 0x2189 for b"123456789")."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# --- serial framing ----------------------------------------------------------------------


def encode_frame(apdu: bytes) -> bytes:
    """DLE STX, the APDU with every DLE doubled, DLE ETX, CRC low, CRC high."""
    crc = crc16_kermit(apdu + bytes([ETX]))
    stuffed = apdu.replace(bytes([DLE]), bytes([DLE, DLE]))
    return bytes([DLE, STX]) + stuffed + bytes([DLE, ETX, crc & 0xFF, crc >> 8])


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """A frame whose CRC checked out; acknowledge it with ACK."""

    apdu: bytes

    def __repr__(self) -> str:  # the APDU may carry card data: never print it
        return f"Frame({len(self.apdu)} bytes)"


@dataclass(frozen=True, slots=True)
class Ack:
    """The other end accepted our last frame."""


@dataclass(frozen=True, slots=True)
class Nak:
    """The other end rejected our last frame: send it again."""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that cannot be used (CRC, stray DLE, too long, cut short): answer with NAK."""

    reason: str


LinkEvent = Frame | Ack | Nak | BadFrame


class _State(enum.Enum):
    IDLE = enum.auto()  # between frames: ACK and NAK bytes count, other bytes are line noise
    IDLE_DLE = enum.auto()  # a DLE between frames: STX starts a frame
    DATA = enum.auto()  # inside a frame
    DATA_DLE = enum.auto()  # a DLE inside a frame: DLE (stuffed), ETX (end) or STX (restart)
    CRC_LO = enum.auto()
    CRC_HI = enum.auto()
    SKIP = enum.auto()  # the rest of a broken frame, up to its DLE ETX and CRC
    SKIP_DLE = enum.auto()
    SKIP_CRC = enum.auto()


class FrameDecoder:
    """Bytes from the serial line in, LinkEvents out; never raises, whatever arrives.

    Memory stays bounded: a frame longer than `max_apdu` bytes is reported and skipped. The
    events do not depend on how the input is split into chunks.
    """

    def __init__(self, max_apdu: int = MAX_APDU_BYTES) -> None:
        self.max_apdu = max_apdu
        self._state = _State.IDLE
        self._buf = bytearray()
        self._crc_lo = 0
        self._skip_crc = 0
        self.noise_bytes = 0  # bytes seen outside any frame (counted, for diagnostics)

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not ended (the caller times out T1 on this)."""
        return self._state not in (_State.IDLE, _State.IDLE_DLE)

    def reset(self) -> list[LinkEvent]:
        """Abandon a frame cut short (the inter-byte timeout expired): report it for a NAK."""
        cut = self._state in (_State.DATA, _State.DATA_DLE, _State.CRC_LO, _State.CRC_HI)
        self._state = _State.IDLE
        self._buf.clear()
        return [BadFrame("frame cut short: the line went quiet inside a frame")] if cut else []

    def feed(self, data: bytes) -> list[LinkEvent]:
        """Consume `data`; return the events it completes, in stream order."""
        events: list[LinkEvent] = []
        for byte in data:
            event = self._step(byte)
            if event is not None:
                events.append(event)
        return events

    def _step(self, byte: int) -> LinkEvent | None:
        state = self._state
        if state is _State.DATA:
            if byte == DLE:
                self._state = _State.DATA_DLE
                return None
            return self._append(byte)
        if state is _State.DATA_DLE:
            return self._after_dle(byte)
        if state is _State.CRC_LO:
            self._crc_lo = byte
            self._state = _State.CRC_HI
            return None
        if state is _State.CRC_HI:
            return self._finish(byte)
        if state is _State.SKIP:
            if byte == DLE:
                self._state = _State.SKIP_DLE
            return None
        if state is _State.SKIP_DLE:
            return self._skip_after_dle(byte)
        if state is _State.SKIP_CRC:
            self._skip_crc -= 1
            if not self._skip_crc:
                self._state = _State.IDLE
            return None
        if state is _State.IDLE_DLE:
            if byte == STX:
                self._start()
                return None
            if byte == DLE:
                self.noise_bytes += 1
                return None
            self.noise_bytes += 1
            self._state = _State.IDLE
            return self._step(byte)
        # IDLE
        if byte == ACK:
            return Ack()
        if byte == NAK:
            return Nak()
        if byte == DLE:
            self._state = _State.IDLE_DLE
        else:
            self.noise_bytes += 1
        return None

    def _start(self) -> None:
        self._buf.clear()
        self._state = _State.DATA

    def _broken(self, reason: str) -> BadFrame:
        """Report a broken frame and skip what is left of it, so its bytes are not misread."""
        self._buf.clear()
        self._state = _State.SKIP
        return BadFrame(reason)

    def _skip_after_dle(self, byte: int) -> LinkEvent | None:
        if byte == ETX:
            self._state, self._skip_crc = _State.SKIP_CRC, 2
        elif byte == STX:
            self._start()
        else:
            self._state = _State.SKIP
        return None

    def _append(self, byte: int) -> LinkEvent | None:
        if len(self._buf) >= self.max_apdu:
            return self._broken(f"frame longer than {self.max_apdu} bytes")
        self._buf.append(byte)
        self._state = _State.DATA
        return None

    def _after_dle(self, byte: int) -> LinkEvent | None:
        if byte == DLE:
            return self._append(DLE)
        if byte == ETX:
            self._state = _State.CRC_LO
            return None
        if byte == STX:
            self._start()
            return BadFrame("a new frame started before the previous one ended")
        return self._broken(f"DLE followed by 0x{byte:02X} inside a frame")

    def _finish(self, crc_hi: int) -> LinkEvent:
        apdu = bytes(self._buf)
        self._buf.clear()
        self._state = _State.IDLE
        received = self._crc_lo | crc_hi << 8
        computed = crc16_kermit(apdu + bytes([ETX]))
        if received != computed:
            return BadFrame(
                f"CRC mismatch: frame has 0x{received:04X}, data gives 0x{computed:04X}"
            )
        return Frame(apdu)


# --- APDUs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Apdu:
    """Class byte, instruction byte and data; `command` is the "06 01" people look up."""

    cla: int
    ins: int
    data: bytes = b""

    @property
    def command(self) -> str:
        return f"{self.cla:02X} {self.ins:02X}"

    @property
    def data_offset(self) -> int:
        """Where `data` starts in the encoded APDU (for error offsets)."""
        return 3 if len(self.data) < 0xFF else 5

    def encode(self) -> bytes:
        return bytes([self.cla, self.ins]) + encode_length(len(self.data)) + self.data

    def __repr__(self) -> str:  # data may carry card data: never print it
        return f"Apdu({self.command}, {len(self.data)} data bytes)"


def encode_length(size: int) -> bytes:
    """One byte below 0xFF, else 0xFF and two bytes little-endian."""
    if not 0 <= size <= MAX_DATA_BYTES:
        raise ValueError(f"APDU data of {size} bytes does not fit a ZVT length field")
    if size < 0xFF:
        return bytes([size])
    return bytes([0xFF, size & 0xFF, size >> 8])


def _header(buf: bytes) -> tuple[int, int] | None:
    """(data length, header size) of the APDU at the front of `buf`, None if incomplete."""
    if len(buf) < 3:
        return None
    if buf[2] != 0xFF:
        return buf[2], 3
    if len(buf) < 5:
        return None
    return buf[3] | buf[4] << 8, 5


def split_apdu(buf: bytes) -> tuple[Apdu, bytes] | None:
    """The first APDU of a byte stream and the rest, or None until it is complete."""
    header = _header(buf)
    if header is None:
        return None
    size, start = header
    if len(buf) < start + size:
        return None
    return Apdu(buf[0], buf[1], buf[start : start + size]), buf[start + size :]


def parse_apdu(data: bytes) -> Apdu:
    """Exactly one APDU (the payload of a serial frame); ZvtProtocolError otherwise."""
    header = _header(data)
    if header is None:
        raise _fail("APDU shorter than its header", data, len(data), 0)
    size, start = header
    if len(data) != start + size:
        raise _fail(
            f"APDU {data[0]:02X} {data[1]:02X} declares {size} data bytes "
            f"but carries {len(data) - start}",
            data,
            2,
            0,
        )
    return Apdu(data[0], data[1], data[start:])


class ApduStreamDecoder:
    """TCP carries bare APDUs: bytes in, whole APDUs out; never raises."""

    def __init__(self) -> None:
        self._buf = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Apdu]:
        self._buf += data
        apdus: list[Apdu] = []
        while (split := split_apdu(self._buf)) is not None:
            apdu, self._buf = split
            apdus.append(apdu)
        return apdus


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
            raise _fail(f"BCD nibble {nibble.upper()} is not a digit", data, index // 2, base)
    return text


def bcd_decode(data: bytes, base: int = 0) -> int:
    return int(bcd_digits(data, base)) if data else 0


def password_bcd(password: str) -> bytes:
    """The ECR password (six digits) as the 3 BCD bytes commands carry."""
    if len(password) != 6 or not password.isdigit():
        raise ValueError("the ZVT password must be exactly six digits")
    return bytes.fromhex(password)


# --- TLV (BMP 06) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Tlv:
    """One TLV item; a constructed tag (bit 0x20 of its first byte) has children instead."""

    tag: int
    value: bytes = b""
    children: tuple[Tlv, ...] = ()

    def __repr__(self) -> str:  # values may carry card data: show structure only
        inner = f"{len(self.children)} items" if self.children else f"{len(self.value)} bytes"
        return f"Tlv(0x{self.tag:X}, {inner})"


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def _ber_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    if size <= 0xFF:
        return bytes([0x81, size])
    if size <= 0xFFFF:
        return bytes([0x82, size >> 8, size & 0xFF])
    raise ValueError(f"TLV value of {size} bytes is too long")


def _read_ber_length(data: bytes, i: int, base: int) -> tuple[int, int]:
    if i >= len(data):
        raise _fail("TLV length missing", data, i, base)
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    if count not in (1, 2):
        raise _fail("TLV length form not supported", data, i, base)
    if i + 1 + count > len(data):
        raise _fail("TLV length cut short", data, len(data), base)
    return int.from_bytes(data[i + 1 : i + 1 + count], "big"), i + 1 + count


def encode_tlv(items: Iterable[Tlv]) -> bytes:
    out = bytearray()
    for item in items:
        body = encode_tlv(item.children) if item.children else item.value
        out += _tag_bytes(item.tag) + _ber_length(len(body)) + body
    return bytes(out)


def decode_tlv(data: bytes, base: int = 0, depth: int = 0) -> tuple[Tlv, ...]:
    """Parse TLV items; constructed tags are parsed recursively (at most MAX_TLV_DEPTH)."""
    items: list[Tlv] = []
    i = 0
    while i < len(data):
        first = data[i]
        tag, i = first, i + 1
        if first & 0x1F == 0x1F:  # multi-byte tag: continuation bytes have bit 0x80
            while True:
                if i >= len(data):
                    raise _fail("TLV tag cut short", data, i, base)
                if tag > 0xFFFF:
                    raise _fail("TLV tag longer than 3 bytes", data, i, base)
                tag, i = tag << 8 | data[i], i + 1
                if not data[i - 1] & 0x80:
                    break
        size, i = _read_ber_length(data, i, base)
        if i + size > len(data):
            raise _fail(f"TLV 0x{tag:X} declares {size} bytes, {len(data) - i} left", data, i, base)
        body = data[i : i + size]
        if first & 0x20:
            if depth >= MAX_TLV_DEPTH:
                raise _fail("TLV nested too deep", data, i, base)
            items.append(Tlv(tag, children=decode_tlv(body, base + i, depth + 1)))
        else:
            items.append(Tlv(tag, body))
        i += size
    return tuple(items)


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


def _var_header(size: int, digits: int) -> bytes:
    if size >= 10**digits:
        raise ValueError(f"{size} bytes do not fit an L{'L' * digits}VAR field")
    return bytes(0xF0 | int(d) for d in f"{size:0{digits}d}")


def _read_var_length(data: bytes, i: int, digits: int, base: int, name: str) -> tuple[int, int]:
    size = 0
    for k in range(i, i + digits):
        if k >= len(data):
            raise _fail(f"{name}: length cut short", data, k, base)
        if data[k] & 0xF0 != 0xF0 or data[k] & 0x0F > 9:
            raise _fail(f"{name}: length byte is not of the form F0-F9", data, k, base)
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
            raise _fail(f"PAN nibble {nibble} is neither a digit nor E/F", raw, index // 2, base)
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
        body = _var_header(len(raw), _VAR_DIGITS[kind]) + raw
    elif kind in (Kind.LLVAR_BINARY, Kind.LLLVAR_BINARY) and isinstance(value, bytes):
        body = _var_header(len(value), _VAR_DIGITS[kind]) + value
    elif kind is Kind.PAN and isinstance(value, str):
        raw = _encode_pan(value)
        body = _var_header(len(raw), 2) + raw
    elif kind is Kind.TLV and isinstance(value, tuple):
        raw = encode_tlv(value)
        body = _ber_length(len(raw)) + raw
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
            raise _fail(f"unknown BMP 0x{tag:02X}: its length cannot be known", data, i, base)
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
            raise _fail(f"{name} has no value", data, i, base)
        return data[i], i + 1
    if kind in _FIXED_KINDS:
        end = i + spec.size
        if end > len(data):
            raise _fail(f"{name} needs {spec.size} bytes, {len(data) - i} left", data, i, base)
        return _decode_fixed(spec, data[i:end], base + i), end
    if kind is Kind.TLV:
        size, start = _read_ber_length(data, i, base)
        if start + size > len(data):
            raise _fail(f"{name} declares {size} bytes, {len(data) - start} left", data, i, base)
        return decode_tlv(data[start : start + size], base + start), start + size
    size, start = _read_var_length(data, i, _VAR_DIGITS[kind], base, name)
    end = start + size
    if end > len(data):
        raise _fail(f"{name} declares {size} bytes, {len(data) - start} left", data, i, base)
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


# --- messages the driver reads -----------------------------------------------------------


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
        size, start = _read_var_length(data, 0, 3, base, "software version")
        if start + size > len(data):
            raise _fail(f"software version declares {size} bytes", data, 0, base)
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
        raise _fail("06 00 needs a password and a config byte", data, len(data), base)
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


# --- commands (ECR -> PT) ----------------------------------------------------------------

ACK_APDU = Apdu(0x80, 0x00)  # positive acknowledgement of an APDU, both directions

CONFIG_ECR_PRINTS_PAYMENT = 0x02
CONFIG_ECR_PRINTS_ADMIN = 0x04
CONFIG_INTERMEDIATE_STATUS = 0x08
CONFIG_ECR_CONTROLS_PAYMENT = 0x10
CONFIG_ECR_CONTROLS_ADMIN = 0x20
CONFIG_PRINT_LINES = 0x80


def negative_ack(code: int) -> Apdu:
    """84 xx: the receiver cannot do what the APDU asked (xx is a result code)."""
    return Apdu(0x84, code)


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


# --- messages (PT -> ECR), for the simulator --------------------------------------------


def intermediate_status(code: int) -> Apdu:
    return Apdu(0x04, 0xFF, bytes([code]))


def status_information(fields: Iterable[tuple[int, BmpValue]]) -> Apdu:
    return Apdu(0x04, 0x0F, encode_bmps(fields))


def completion(fields: Iterable[tuple[int, BmpValue]] = ()) -> Apdu:
    return Apdu(0x06, 0x0F, encode_bmps(fields))


def enquiry_completion(software_version: str, terminal_status: int) -> Apdu:
    raw = software_version.encode(TEXT_ENCODING)
    return Apdu(0x06, 0x0F, _var_header(len(raw), 3) + raw + bytes([terminal_status]))


def pt_abort(result_code: int) -> Apdu:
    return Apdu(0x06, 0x1E, bytes([result_code]))


def print_line(text: str, attribute: int = 0x00) -> Apdu:
    return Apdu(0x06, 0xD1, bytes([attribute]) + text.encode(TEXT_ENCODING))


# --- currencies --------------------------------------------------------------------------

CURRENCIES: Mapping[str, int] = {
    "EUR": 978,
    "CHF": 756,
    "GBP": 826,
    "USD": 840,
    "DKK": 208,
    "SEK": 752,
    "NOK": 578,
    "ISK": 352,
    "PLN": 985,
    "CZK": 203,
    "HUF": 348,
    "RON": 946,
    "BGN": 975,
    "TRY": 949,
    "JPY": 392,
    "CAD": 124,
    "AUD": 36,
}
_CURRENCY_CODES = {number: code for code, number in CURRENCIES.items()}


def currency_number(code: str) -> int:
    """ISO 4217 numeric code for a currency the driver knows; ValueError names the known ones."""
    try:
        return CURRENCIES[code]
    except KeyError:
        known = ", ".join(sorted(CURRENCIES))
        raise ValueError(f"currency {code!r} is not known to the ZVT driver ({known})") from None


def currency_code(number: int) -> str | None:
    return _CURRENCY_CODES.get(number)


# --- code tables (meanings from the spec as published by ecrterm and Portalum.Zvt) -------

INTERMEDIATE_STATUS: Mapping[int, str] = {
    0x00: "waiting for the amount to be confirmed",
    0x01: "enter PIN",
    0x02: "enter PIN",
    0x03: "not accepted",
    0x04: "waiting for the host",
    0x05: "sending an automatic reversal",
    0x06: "sending post-bookings",
    0x07: "card not admitted",
    0x08: "card unknown",
    0x09: "card expired",
    0x0A: "insert card",
    0x0B: "remove card",
    0x0C: "card not readable",
    0x0D: "processing error",
    0x0E: "please wait",
    0x0F: "the terminal is starting an automatic end of day",
    0x10: "invalid card",
    0x11: "showing the balance",
    0x12: "system malfunction",
    0x13: "payment not possible",
    0x14: "credit not sufficient",
    0x15: "incorrect PIN",
    0x16: "limit not sufficient",
    0x17: "please wait",
    0x18: "PIN try limit exceeded",
    0x19: "card data incorrect",
    0x1A: "service mode",
    0x1B: "approved, please fill up",
    0x1C: "approved, please take the goods",
    0x1D: "declined",
    0x26: "waiting for the mobile number",
    0x27: "waiting for the mobile number to be repeated",
    0xC7: "waiting for the mileage",
    0xC8: "waiting for the cashier",
    0xC9: "the terminal is running an automatic diagnosis",
    0xCA: "the terminal is running an automatic initialisation",
    0xCB: "merchant journal full",
    0xCC: "debit advice not possible, PIN required",
    0xD2: "dialling up",
    0xD3: "dial-up connection made",
    0xE0: "waiting for the application to be chosen",
    0xE1: "waiting for the language to be chosen",
    0xF1: "offline",
    0xF2: "online",
    0xF3: "offline transaction",
}

RESULT_CODES: Mapping[int, str] = {
    0x00: "no error",
    0x64: "card not readable",
    0x65: "card data not present (no track data and no chip)",
    0x66: "processing error (or a card reader problem)",
    0x67: "function not permitted for girocard and Maestro cards",
    0x68: "function not permitted for credit and fuel cards",
    0x6A: "turnover file full",
    0x6B: "function deactivated (the terminal is not registered)",
    0x6C: "aborted at the terminal or timed out",
    0x6E: "card on the blocked list",
    0x6F: "wrong currency",
    0x71: "credit not sufficient (chip card)",
    0x72: "chip error",
    0x73: "card data incorrect",
    0x74: "DUKPT engine exhausted",
    0x75: "text not authentic",
    0x76: "PAN not on the white list",
    0x77: "end of day not possible",
    0x78: "card expired",
    0x79: "card not yet valid",
    0x7A: "card unknown",
    0x7D: "communication error (the communication module does not answer)",
    0x7E: "fallback to magnetic stripe not possible",
    0x83: "function not possible",
    0x85: "key missing",
    0x89: "PIN pad defective",
    0x9A: "ZVT protocol error",
    0x9B: "dial-up or communication fault",
    0x9C: "please wait",
    0xA0: "receiver not ready",
    0xA1: "the remote station does not answer",
    0xA3: "no connection",
    0xA4: "Geldkarte submission not possible",
    0xA5: "function not allowed by PCI-DSS/P2PE rules",
    0xB1: "memory full",
    0xB2: "merchant journal full",
    0xB4: "already reversed",
    0xB5: "reversal not possible",
    0xB7: "pre-authorisation incorrect (amount too high) or amount wrong",
    0xB8: "pre-authorisation error",
    0xBF: "supply voltage too low",
    0xC0: "card locking mechanism defective",
    0xC1: "merchant card locked",
    0xC2: "diagnosis required",
    0xC3: "maximum amount exceeded",
    0xC4: "card profile invalid; new card profiles must be loaded",
    0xC5: "payment method not supported",
    0xC6: "currency not applicable",
    0xC8: "amount too small",
    0xC9: "maximum transaction amount too small",
    0xCB: "function only allowed in euro",
    0xCC: "printer not ready",
    0xD2: "function not permitted for service cards",
    0xDC: "card inserted",
    0xDD: "error while ejecting the card",
    0xDE: "error while inserting the card",
    0xE0: "remote maintenance active",
    0xE2: "card reader does not answer or is defective",
    0xE3: "shutter closed",
    0xE4: "terminal activation required",
    0xE7: "goods group not found",
    0xE8: "no goods group table loaded",
    0xE9: "restriction code not permitted",
    0xEA: "card code not permitted",
    0xEB: "function not executable (PIN algorithm unknown)",
    0xEC: "PIN processing not possible",
    0xED: "PIN pad defective",
    0xF0: "open end-of-day batch present",
    0xF1: "girocard/Maestro offline error",
    0xF5: "OPT error",
    0xF6: "OPT data not available (OPT personalisation required)",
    0xFA: "error transmitting offline transactions",
    0xFB: "turnover data set defective",
    0xFC: "necessary device missing or defective",
    0xFD: "baud rate not supported",
    0xFE: "register unknown",
    0xFF: "system error",
}

TERMINAL_STATUS: Mapping[int, str] = {
    0x00: "ready",
    0x51: "initialisation required",
    0x62: "date or time incorrect",
    0x9C: "please wait (for example a software update is running)",
    0xB1: "memory full",
    0xB2: "merchant journal full",
    0xBF: "supply voltage too low",
    0xC0: "card locking mechanism defective",
    0xC1: "merchant card locked",
    0xC2: "diagnosis required",
    0xC4: "card profile invalid; new card profiles must be loaded",
    0xCC: "printer not ready",
    0xDC: "card inserted",
    0xDF: "out of order",
    0xE0: "remote maintenance active",
    0xE1: "card not completely removed",
    0xE2: "card reader does not answer or is defective",
    0xE3: "shutter closed",
    0xF6: "OPT data not available (OPT personalisation required)",
}

ABORTED_BY_USER = 0x6C  # "abort via time-out or abort key"
REMOVE_CARD = 0x40  # intermediate codes 0x41-0x67 are 0x01-0x27 plus "remove card"


def intermediate_text(code: int) -> str:
    """What a 04 FF status means, for the cashier."""
    if code in INTERMEDIATE_STATUS:
        return INTERMEDIATE_STATUS[code]
    base = INTERMEDIATE_STATUS.get(code - REMOVE_CARD) if 0x41 <= code <= 0x67 else None
    if base is not None:
        return base if base == "remove card" else f"{base}, remove card"
    return f"terminal status 0x{code:02X}"


def result_text(code: int) -> str:
    """What a result code (BMP 27, 06 1E, 84 xx) means, for a person."""
    if code in RESULT_CODES:
        return RESULT_CODES[code]
    if 0x01 <= code <= 0x63:
        return f"declined by the card issuer's host (host code 0x{code:02X})"
    return f"result code 0x{code:02X}"


def terminal_status_text(code: int) -> str:
    return TERMINAL_STATUS.get(code, f"terminal status 0x{code:02X}")
