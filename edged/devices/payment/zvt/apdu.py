"""ZVT APDUs, sans-IO: class and instruction bytes, the length field, the data.

The unit both transports carry (inside DLE frames on serial, bare on TCP) and every command
and message fills. The APDU acknowledgements live here because both ends send them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.devices.payment.zvt.errors import error_at

MAX_DATA_BYTES = 0xFFFF  # the extended length field has two bytes
MAX_APDU_BYTES = 2 + 3 + MAX_DATA_BYTES


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
        raise error_at("APDU shorter than its header", data, len(data), 0)
    size, start = header
    if len(data) != start + size:
        raise error_at(
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


ACK_APDU = Apdu(0x80, 0x00)  # positive acknowledgement of an APDU, both directions


def negative_ack(code: int) -> Apdu:
    """84 xx: the receiver cannot do what the APDU asked (xx is a result code)."""
    return Apdu(0x84, code)
