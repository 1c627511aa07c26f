"""Sans-IO scanner framing: cut a serial scanner's byte stream into one frame per code.

Pure code over bytes, as in h11: the serial driver feeds what it reads and gets frames, or
`ProtocolError` items naming the device, the stream offset and the byte; turning a frame into
a `Scan` is `codec`'s job. Keyboard-wedge scanners have no byte stream and skip this layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edged.devices.state import ProtocolError

MAX_CODE_BYTES = 8192  # a full QR code carries < 3 KB and PDF417 < 2 KB: more is noise
LINE_ENDINGS = (b"\r", b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Frame:
    """One code's bytes as the scanner sent them, prefix and suffix removed."""

    data: bytes
    offset: int  # stream offset of data[0], counted from the first byte fed


class ScanFramer:
    """Cut a scanner's byte stream into frames: [junk] prefix code suffix, repeated.

    With a line-ending suffix (CR, LF or CRLF) any CR or LF ends a frame and empty lines are
    skipped, so a scanner set to CRLF also works with suffix CR (a common mismatch). Any other
    suffix must match exactly. Bytes before the prefix, and frames longer than `max_code`
    bytes, are reported as ProtocolError items in the output, in stream order, and the framer
    carries on with the next frame. It holds at most `max_code` + len(suffix) bytes between
    calls, and its output does not depend on how the stream is split into chunks.
    """

    def __init__(
        self,
        *,
        prefix: bytes = b"",
        suffix: bytes = b"\r",
        max_code: int = MAX_CODE_BYTES,
        device: str = "scanner",
    ) -> None:
        if not suffix:
            raise ValueError("a serial scanner needs a suffix (CR, CRLF, TAB ...) to end codes")
        if max_code < 1:
            raise ValueError(f"max_code must be >= 1, got {max_code}")
        self.prefix = prefix
        self.suffix = suffix
        self.max_code = max_code
        self.device = device
        self._lines = suffix in LINE_ENDINGS
        self._tail = 0 if self._lines else len(suffix) - 1  # bytes of a suffix split by a read
        self._buf = bytearray()
        self._start = 0  # stream offset of _buf[0]
        self._searched = 0  # _buf[:_searched] holds no terminator
        self._discarding = False  # inside an oversize frame, waiting for its end

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held between calls."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        """Consume `data`; return the frames and errors it completes, in stream order."""
        out: list[Frame | ProtocolError] = []
        self._buf += data
        while (end := self._find_end()) is not None:
            stop, after = end
            if self._discarding:
                self._discarding = False
            elif stop > self.max_code:
                out.append(self._oversize())
            else:
                self._frame(bytes(self._buf[:stop]), out)
            del self._buf[:after]
            self._start += after
            self._searched = 0
        keep = self._tail if self._discarding else self.max_code + self._tail
        if len(self._buf) > keep:
            if not self._discarding:
                out.append(self._oversize())
                self._discarding = True
            drop = len(self._buf) - self._tail
            del self._buf[:drop]
            self._start += drop
            self._searched = 0
        return out

    def _find_end(self) -> tuple[int, int] | None:
        """(end of the frame's bytes, start of the next frame) of the first terminator."""
        if self._lines:
            match = _LINE_END.search(self._buf, self._searched)
            if match is None:
                self._searched = len(self._buf)
                return None
            return match.start(), match.start() + 1
        index = self._buf.find(self.suffix, self._searched)
        if index < 0:
            self._searched = max(0, len(self._buf) - self._tail)
            return None
        return index, index + len(self.suffix)

    def _frame(self, raw: bytes, out: list[Frame | ProtocolError]) -> None:
        if not raw:
            return  # an empty line, or the LF of a CRLF
        if not self.prefix:
            out.append(Frame(raw, self._start))
            return
        at = raw.find(self.prefix)
        if at != 0:
            junk = raw if at < 0 else raw[:at]
            out.append(
                byte_error(
                    self.device,
                    self._start,
                    junk[0],
                    f"{len(junk)} byte(s) outside a code; expected the prefix {self.prefix!r} "
                    "first (check the scanner's prefix setting)",
                )
            )
        if at >= 0:
            out.append(Frame(raw[at + len(self.prefix) :], self._start + at + len(self.prefix)))

    def _oversize(self) -> ProtocolError:
        return ProtocolError(
            f"{self.device}: offset {self._start}: no suffix {self.suffix!r} within "
            f"{self.max_code} bytes; the frame is dropped (check the scanner's suffix setting)"
        )


_LINE_END = re.compile(rb"[\r\n]")


def byte_error(device: str, offset: int, byte: int, problem: str) -> ProtocolError:
    """A ProtocolError in the project's shape: device, stream offset, byte, problem."""
    return ProtocolError(f"{device}: offset {offset}: byte 0x{byte:02x}: {problem}")
