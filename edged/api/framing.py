"""Sans-IO newline framing for the local API: bytes in, whole lines (or "oversize") out."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FRAME_BYTES = 1024 * 1024  # DESIGN: one JSON object per line, at most 1 MiB


@dataclass(frozen=True, slots=True)
class Line:
    """One complete frame, without its terminating newline."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    """A line grew past `limit` bytes; its bytes up to the next newline are discarded."""

    limit: int


FrameEvent = Line | Oversize


class LineDecoder:
    """Split a byte stream on b"\\n" into Line events, with a hard per-line size limit.

    A line longer than `max_frame` bytes (newline not counted) yields one Oversize event as
    soon as the excess is seen, and the decoder skips to the next newline; it never holds
    more than `max_frame` bytes between calls, so memory stays bounded whatever the peer
    sends. The events do not depend on how the input is split into chunks.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        if max_frame < 0:
            raise ValueError(f"max_frame must be >= 0, got {max_frame}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._discarding = False  # inside an oversize line, waiting for its newline

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held between calls (never more than max_frame)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Consume `data`; return the events it completes, in stream order."""
        events: list[FrameEvent] = []
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if self._discarding:
                self._discarding = False
            elif len(self._buf) + newline - start > self.max_frame:
                events.append(Oversize(self.max_frame))
            elif self._buf:
                self._buf += data[start:newline]
                events.append(Line(bytes(self._buf)))
            else:
                events.append(Line(data[start:newline]))
            self._buf.clear()
            start = newline + 1
        rest = len(data) - start
        if rest and not self._discarding:
            if len(self._buf) + rest > self.max_frame:
                events.append(Oversize(self.max_frame))
                self._buf.clear()
                self._discarding = True
            else:
                self._buf += data[start:]
        return events

    def clear(self) -> None:
        """Drop a held partial line at once (its connection is closing)."""
        self._buf = bytearray()
        self._discarding = False

    def eof(self) -> list[FrameEvent]:
        """The stream ended: a trailing line without newline still counts as a frame."""
        events: list[FrameEvent] = [Line(bytes(self._buf))] if self._buf else []
        self._buf.clear()
        self._discarding = False
        return events
