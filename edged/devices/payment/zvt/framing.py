"""ZVT's serial link layer, sans-IO: CRC-16/KERMIT, DLE STX/ETX frames, ACK and NAK.

Only the serial line frames APDUs (over TCP they travel bare, see `apdu.ApduStreamDecoder`).
The driver and the simulator run this same code on the two ends of the line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edged.devices.payment.zvt.apdu import MAX_APDU_BYTES

DLE = 0x10
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15


# --- CRC-16/KERMIT (reflected poly 0x8408, init 0), low byte first on the wire -----------


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
