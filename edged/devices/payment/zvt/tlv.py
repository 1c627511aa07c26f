"""The BER-TLV container of BMP 06, sans-IO: nested items, encoded and decoded.

Apart from the BMP table because it is a format of its own (BER tags and lengths, nesting);
the depth limit keeps hostile nesting from recursing without end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edged.devices.payment.zvt.errors import error_at

MAX_TLV_DEPTH = 8  # nesting of constructed TLV tags we follow before calling it garbage


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


def ber_length(size: int) -> bytes:
    """A BER length: one byte below 0x80, else 81 or 82 and the size big-endian."""
    if size < 0x80:
        return bytes([size])
    if size <= 0xFF:
        return bytes([0x81, size])
    if size <= 0xFFFF:
        return bytes([0x82, size >> 8, size & 0xFF])
    raise ValueError(f"TLV value of {size} bytes is too long")


def read_ber_length(data: bytes, i: int, base: int) -> tuple[int, int]:
    """(size, index after the length) of the BER length at `data[i]`."""
    if i >= len(data):
        raise error_at("TLV length missing", data, i, base)
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    if count not in (1, 2):
        raise error_at("TLV length form not supported", data, i, base)
    if i + 1 + count > len(data):
        raise error_at("TLV length cut short", data, len(data), base)
    return int.from_bytes(data[i + 1 : i + 1 + count], "big"), i + 1 + count


def encode_tlv(items: Iterable[Tlv]) -> bytes:
    out = bytearray()
    for item in items:
        body = encode_tlv(item.children) if item.children else item.value
        out += _tag_bytes(item.tag) + ber_length(len(body)) + body
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
                    raise error_at("TLV tag cut short", data, i, base)
                if tag > 0xFFFF:
                    raise error_at("TLV tag longer than 3 bytes", data, i, base)
                tag, i = tag << 8 | data[i], i + 1
                if not data[i - 1] & 0x80:
                    break
        size, i = read_ber_length(data, i, base)
        if i + size > len(data):
            raise error_at(
                f"TLV 0x{tag:X} declares {size} bytes, {len(data) - i} left", data, i, base
            )
        body = data[i : i + size]
        if first & 0x20:
            if depth >= MAX_TLV_DEPTH:
                raise error_at("TLV nested too deep", data, i, base)
            items.append(Tlv(tag, children=decode_tlv(body, base + i, depth + 1)))
        else:
            items.append(Tlv(tag, body))
        i += size
    return tuple(items)
