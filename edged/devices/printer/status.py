"""ESC/POS status, sans-IO: the request bytes, and a parser that types what the printer sends back.

A printer sends three kinds of status bytes on one line, and the parser tells them apart by
their fixed bits and by which requests are outstanding. Checked against Epson's ESC/POS
reference pages (TM-T88III/TM-U220/TM-L60II specifications, mirrored on manualshive,
manualsdump and easymanua.ls) and Citizen/Bixolon/Sewoo manuals that copy them:

- `DLE EOT n` (real-time, answered on reception even when offline or the buffer is full):
  one byte `0xx1xx10b` — bit 0 off, bit 1 on, bit 4 on, bit 7 off.
- Automatic Status Back (`GS a n`): four consecutive bytes on every change; byte 1 has bits 0
  and 1 off, bit 4 on, bit 7 off (so bit 1 tells it from a `DLE EOT` reply); bytes 2-4 have
  bits 4 and 7 off. Only an XOFF may come between the four bytes.
- `GS r 1` (paper sensor; processed in order after the print data before it): bits 4 and 7
  off. Its reply therefore says "everything sent before it has been printed". With the paper
  out the printer goes offline and does not execute it, so its paper-end bits mean nothing.

XON (0x11) and XOFF (0x13), sent by printers set to XON/XOFF flow control, fit none of these
and are skipped. A real-time request that appears inside print data (`10 04 n` within raster
image bytes) is answered by the printer too; `RealTimeScanner` finds those in what the host
writes, so the host can expect every reply and the replies stay in step.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from edged.devices.state import ProtocolError

DLE, EOT, ESC, GS = 0x10, 0x04, 0x1B, 0x1D
XON, XOFF = 0x11, 0x13

# `DLE EOT n`: which status a reply to request n carries.
PRINTER, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR = 1, 2, 3, 4
REAL_TIME_REQUESTS = (PRINTER, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR)

# GS a n: every item (drawer, online/offline, errors, paper sensors).
ASB_ALL = 0x0F

DRAWER_PINS = {2: 0, 5: 1}  # connector pin -> ESC p m
MAX_DRAWER_PULSE_MS = 510  # ESC p times are t x 2 ms with t <= 255

_REAL_TIME_MASK, _REAL_TIME_FORM = 0x93, 0x12  # 0xx1xx10b
_ASB_HEAD_MASK, _ASB_HEAD_FORM = 0x93, 0x10  # 0xx1xx00b
_BODY_MASK = 0x90  # ASB bytes 2-4 and GS r replies: bits 4 and 7 off


# --- requests ------------------------------------------------------------------------------


def real_time_status(n: int) -> bytes:
    """`DLE EOT n`: ask for status n (1 printer, 2 offline cause, 3 error cause, 4 paper)."""
    if n not in REAL_TIME_REQUESTS:
        raise ValueError(f"DLE EOT n takes n = 1..4, not {n}")
    return bytes((DLE, EOT, n))


def enable_asb(items: int = ASB_ALL) -> bytes:
    """`GS a n`: send 4 status bytes now and on every change of the chosen items (0 = off)."""
    if not 0 <= items <= 0x0F:
        raise ValueError(f"GS a takes items 0..15 (bit 0 drawer .. bit 3 paper), not {items}")
    return bytes((GS, ord("a"), items))


def paper_sensor_status() -> bytes:
    """`GS r 1`: the paper sensor status, sent once everything before it has been printed."""
    return bytes((GS, ord("r"), 1))


def drawer_kick(pin: int, pulse_ms: int) -> bytes:
    """`ESC p m t1 t2`: pulse drawer connector pin 2 or 5 for `pulse_ms` (same time off).

    The printer counts in 2 ms steps: t = pulse_ms // 2, at least 1.
    """
    if pin not in DRAWER_PINS:
        raise ValueError(f"drawer pin must be 2 or 5 (the kick-out connector), not {pin}")
    if not 1 <= pulse_ms <= MAX_DRAWER_PULSE_MS:
        raise ValueError(
            f"drawer pulse {pulse_ms} ms is out of range: ESC p allows 1..{MAX_DRAWER_PULSE_MS}"
            " ms (most drawers want 50..200 ms)"
        )
    t = min(255, max(1, pulse_ms // 2))
    return bytes((ESC, ord("p"), DRAWER_PINS[pin], t, t))


class RealTimeScanner:
    """Finds `DLE EOT n` (n = 1..4) in a byte stream as the printer's receiver does.

    Fed every byte written to the printer, in order and in any chunks; returns the n of each
    request that completes, which is exactly the replies the printer will send.
    """

    def __init__(self) -> None:
        self._tail = b""  # up to 2 bytes that may start a request

    def feed(self, data: bytes) -> list[int]:
        buf = self._tail + data
        found: list[int] = []
        i = 0
        while i < len(buf):
            if buf[i] != DLE:
                i += 1
                continue
            if len(buf) - i < 3:
                break
            if buf[i + 1] == EOT and buf[i + 2] in REAL_TIME_REQUESTS:
                found.append(buf[i + 2])
                i += 3
            else:
                i += 1
        self._tail = buf[i:]
        return found


# --- replies -------------------------------------------------------------------------------


class ErrorKind(enum.StrEnum):
    UNRECOVERABLE = "unrecoverable"  # circuit or head failure: power-cycle, then service
    AUTOCUTTER = "autocutter"  # cutter jammed: clear it, open and close the cover
    MECHANICAL = "mechanical"  # paper jam or home-position error
    AUTO_RECOVERABLE = "auto_recoverable"  # head too hot, or cover opened while printing


def _bit(byte: int, n: int) -> bool:
    return bool(byte >> n & 1)


def _error_kind(
    unrecoverable: bool, autocutter: bool, mechanical: bool, auto: bool
) -> ErrorKind | None:
    if unrecoverable:
        return ErrorKind.UNRECOVERABLE
    if autocutter:
        return ErrorKind.AUTOCUTTER
    if mechanical:
        return ErrorKind.MECHANICAL
    if auto:
        return ErrorKind.AUTO_RECOVERABLE
    return None


Paper = Literal["ok", "near_end", "out"]


def _paper(near_end: bool, out: bool) -> Paper:
    return "out" if out else "near_end" if near_end else "ok"


@dataclass(frozen=True, slots=True)
class PrinterInfo:
    """Reply to `DLE EOT 1`."""

    drawer_pin3_high: bool
    offline: bool


@dataclass(frozen=True, slots=True)
class OfflineCause:
    """Reply to `DLE EOT 2`."""

    cover_open: bool
    feed_button: bool  # paper is being fed with the FEED button
    paper_end_stop: bool  # printing stopped because the paper ran out
    error: bool  # details in DLE EOT 3


@dataclass(frozen=True, slots=True)
class ErrorCause:
    """Reply to `DLE EOT 3`."""

    mechanical: bool
    autocutter: bool
    unrecoverable: bool
    auto_recoverable: bool

    @property
    def kind(self) -> ErrorKind | None:
        return _error_kind(
            self.unrecoverable, self.autocutter, self.mechanical, self.auto_recoverable
        )


@dataclass(frozen=True, slots=True)
class PaperSensor:
    """Reply to `DLE EOT 4` (either near-end bit, or either end bit, counts)."""

    near_end: bool
    paper_end: bool


@dataclass(frozen=True, slots=True)
class AsbStatus:
    """One Automatic Status Back frame: the whole status at once."""

    drawer_pin3_high: bool
    offline: bool
    cover_open: bool
    feed_button: bool
    mechanical: bool
    autocutter: bool
    unrecoverable: bool
    auto_recoverable: bool
    near_end: bool
    paper_end: bool


@dataclass(frozen=True, slots=True)
class PrintedMark:
    """Reply to `GS r 1`: everything sent before it has been printed."""

    near_end: bool


RealTimeReply = PrinterInfo | OfflineCause | ErrorCause | PaperSensor
Reply = RealTimeReply | AsbStatus | PrintedMark


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """A well-formed reply byte that no outstanding request explains (a late or stale answer)."""

    byte: int
    offset: int


def decode_real_time(n: int, byte: int) -> RealTimeReply:
    """The reply to `DLE EOT n`; the caller has checked the fixed bits."""
    if n == PRINTER:
        return PrinterInfo(drawer_pin3_high=_bit(byte, 2), offline=_bit(byte, 3))
    if n == OFFLINE_CAUSE:
        return OfflineCause(
            cover_open=_bit(byte, 2),
            feed_button=_bit(byte, 3),
            paper_end_stop=_bit(byte, 5),
            error=_bit(byte, 6),
        )
    if n == ERROR_CAUSE:
        return ErrorCause(
            mechanical=_bit(byte, 2),
            autocutter=_bit(byte, 3),
            unrecoverable=_bit(byte, 5),
            auto_recoverable=_bit(byte, 6),
        )
    if n == PAPER_SENSOR:
        return PaperSensor(near_end=bool(byte & 0x0C), paper_end=bool(byte & 0x60))
    raise ValueError(f"DLE EOT n takes n = 1..4, not {n}")


def decode_asb(frame: bytes) -> AsbStatus:
    """One 4-byte ASB frame; the caller has checked the fixed bits."""
    b1, b2, b3 = frame[0], frame[1], frame[2]
    return AsbStatus(
        drawer_pin3_high=_bit(b1, 2),
        offline=_bit(b1, 3),
        cover_open=_bit(b1, 5),
        feed_button=_bit(b1, 6),
        mechanical=_bit(b2, 2),
        autocutter=_bit(b2, 3),
        unrecoverable=_bit(b2, 5),
        auto_recoverable=_bit(b2, 6),
        near_end=bool(b3 & 0x03),
        paper_end=bool(b3 & 0x0C),
    )


class Expect(enum.Enum):
    REAL_TIME = "DLE EOT"
    PAPER_MARK = "GS r 1"


class StatusParser:
    """Types the bytes a printer sends back. Sans-IO: `feed` bytes, get replies.

    Register each request with `expect_real_time(n)` / `expect_printed_mark()` before the
    bytes go out; replies of one kind come back in the order of their requests. A well-formed
    byte that no request explains comes back as `Unsolicited`. Raises ProtocolError (device,
    offset, byte) on a byte that fits no status form; the line is then out of step and the
    parser is discarded with the connection.
    """

    def __init__(self, device: str = "printer") -> None:
        self.device = device
        self._real_time: deque[int] = deque()
        self._marks = 0
        self._asb: bytearray | None = None  # an ASB frame being collected
        self._offset = 0  # of the next byte, from the start of the connection

    def expect_real_time(self, n: int) -> None:
        if n not in REAL_TIME_REQUESTS:
            raise ValueError(f"DLE EOT n takes n = 1..4, not {n}")
        self._real_time.append(n)

    def expect_printed_mark(self) -> None:
        self._marks += 1

    @property
    def outstanding(self) -> dict[Expect, int]:
        return {Expect.REAL_TIME: len(self._real_time), Expect.PAPER_MARK: self._marks}

    def feed(self, data: bytes) -> list[Reply | Unsolicited]:
        out: list[Reply | Unsolicited] = []
        for byte in data:
            offset = self._offset
            self._offset += 1
            item = self._byte(byte, offset)
            if item is not None:
                out.append(item)
        return out

    def _byte(self, byte: int, offset: int) -> Reply | Unsolicited | None:
        if byte in (XON, XOFF):
            return None
        if self._asb is not None:
            if byte & _BODY_MASK:
                raise self._error(byte, offset, f"byte {len(self._asb) + 1} of a status-back frame")
            self._asb.append(byte)
            if len(self._asb) < 4:
                return None
            frame, self._asb = bytes(self._asb), None
            return decode_asb(frame)
        if byte & _ASB_HEAD_MASK == _ASB_HEAD_FORM:
            self._asb = bytearray((byte,))
            return None
        if byte & _REAL_TIME_MASK == _REAL_TIME_FORM:
            if not self._real_time:
                return Unsolicited(byte, offset)
            return decode_real_time(self._real_time.popleft(), byte)
        if not byte & _BODY_MASK:
            if not self._marks:
                return Unsolicited(byte, offset)
            self._marks -= 1
            return PrintedMark(near_end=bool(byte & 0x03))
        raise self._error(byte, offset, "a status byte")

    def _error(self, byte: int, offset: int, where: str) -> ProtocolError:
        return ProtocolError(
            f"{self.device}: byte 0x{byte:02X} at offset {offset} cannot be {where} "
            "(wrong baud rate or not an ESC/POS printer?)"
        )


# --- the printer's state, for people ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What is known of a printer, folded from its replies; `problem()` says why it stopped."""

    online: bool = True
    cover_open: bool = False
    paper: Paper = "ok"
    drawer_pin3_high: bool = False
    error: ErrorKind | None = None

    @property
    def paper_low(self) -> bool:
        return self.paper == "near_end"

    @property
    def paper_out(self) -> bool:
        return self.paper == "out"

    def problem(self) -> str | None:
        """Why the printer cannot print, for the person in front of it; None when it can."""
        if self.error is ErrorKind.UNRECOVERABLE:
            return "unrecoverable error — switch the printer off and on"
        if self.error is ErrorKind.AUTOCUTTER:
            return "autocutter error — open and close the cover"
        if self.error is ErrorKind.MECHANICAL:
            return "paper jam — open the cover, clear the paper and close it"
        if self.cover_open:
            return "cover open"
        if self.paper_out:
            return "paper out"
        if self.error is ErrorKind.AUTO_RECOVERABLE:
            return "printer paused (print head too hot?) — it resumes by itself"
        if not self.online:
            return "printer offline"
        return None

    def apply(self, reply: Reply) -> PrinterStatus:
        """This status updated with one reply."""
        if isinstance(reply, PrinterInfo):
            return replace(self, online=not reply.offline, drawer_pin3_high=reply.drawer_pin3_high)
        if isinstance(reply, OfflineCause):
            paper: Paper = "out" if reply.paper_end_stop else self.paper
            return replace(self, cover_open=reply.cover_open, paper=paper)
        if isinstance(reply, ErrorCause):
            return replace(self, error=reply.kind)
        if isinstance(reply, PaperSensor):
            return replace(self, paper=_paper(reply.near_end, reply.paper_end))
        if isinstance(reply, AsbStatus):
            return PrinterStatus(
                online=not reply.offline,
                cover_open=reply.cover_open,
                paper=_paper(reply.near_end, reply.paper_end),
                drawer_pin3_high=reply.drawer_pin3_high,
                error=_error_kind(
                    reply.unrecoverable, reply.autocutter, reply.mechanical, reply.auto_recoverable
                ),
            )
        # A GS r reply is sent after printing what came before it: the printer is online, its
        # cover closed, it has paper and no error (its paper-end bits mean nothing).
        return replace(
            self,
            online=True,
            cover_open=False,
            paper="near_end" if reply.near_end else "ok",
            error=None,
        )


# --- the printer's side (used by the simulator) ----------------------------------------------


def encode_real_time(n: int, status: PrinterStatus) -> int:
    """The byte a printer in `status` answers to `DLE EOT n`."""
    byte = _REAL_TIME_FORM
    if n == PRINTER:
        byte |= status.drawer_pin3_high << 2 | (not status.online) << 3
    elif n == OFFLINE_CAUSE:
        byte |= status.cover_open << 2 | status.paper_out << 5 | (status.error is not None) << 6
    elif n == ERROR_CAUSE:
        byte |= _error_bits(status.error)
    elif n == PAPER_SENSOR:
        byte |= (status.paper != "ok") * 0x0C | status.paper_out * 0x60
    else:
        raise ValueError(f"DLE EOT n takes n = 1..4, not {n}")
    return byte


def encode_asb(status: PrinterStatus) -> bytes:
    """The 4-byte Automatic Status Back frame of a printer in `status`."""
    first = _ASB_HEAD_FORM | status.drawer_pin3_high << 2 | (not status.online) << 3
    first |= status.cover_open << 5
    paper = (status.paper != "ok") * 0x03 | status.paper_out * 0x0C
    return bytes((first, _error_bits(status.error), paper, 0))


def encode_printed_mark(status: PrinterStatus) -> int:
    """The byte a printer answers to `GS r 1` once it has printed what came before."""
    return (status.paper != "ok") * 0x03


def _error_bits(error: ErrorKind | None) -> int:
    return {
        None: 0,
        ErrorKind.MECHANICAL: 0x04,
        ErrorKind.AUTOCUTTER: 0x08,
        ErrorKind.UNRECOVERABLE: 0x20,
        ErrorKind.AUTO_RECOVERABLE: 0x40,
    }[error]
