"""The one exception for ZVT bytes that break the protocol, shared by every ZVT parser.

Each parser reports where in the APDU it stopped, so a person reading the log can find the
byte; `error_at` builds that from the parser's own buffer and its offset in the APDU.
"""

from __future__ import annotations

from edged.devices.state import ProtocolError


class ZvtProtocolError(ProtocolError):
    """Bytes from the other end that break ZVT; names the problem, the offset and the byte."""

    def __init__(self, problem: str, offset: int, byte: int | None = None) -> None:
        self.problem = problem
        self.offset = offset
        self.byte = byte
        where = f"byte 0x{byte:02X}" if byte is not None else "end of data"
        super().__init__(f"ZVT: {problem} (offset {offset}, {where})")


def error_at(problem: str, data: bytes, index: int, base: int) -> ZvtProtocolError:
    """The error for `data[index]`, `data` starting at offset `base` of the APDU."""
    byte = data[index] if 0 <= index < len(data) else None
    return ZvtProtocolError(problem, base + index, byte)
