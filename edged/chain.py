"""Canonical bytes (RFC 8785, JCS) of journal entries and the SHA-256 hash chain.

An auditor with nothing but DESIGN.md must be able to recompute every hash, so this is the
spec in code: hash = SHA-256(prev_hash || JCS({seq, id, receipt_no, created_at, sale})).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from decimal import Decimal
from typing import Any

import msgspec

GENESIS_HASH = bytes(32)
MAX_SAFE_INT = 2**53 - 1

_encode_str = json.JSONEncoder(ensure_ascii=False).encode


class CanonicalError(ValueError):
    """A value has no canonical JSON form (NaN, infinity, unsafe integer, bad string)."""


def _number(value: float) -> str:
    """ECMAScript Number::toString, which RFC 8785 prescribes for every number."""
    if not math.isfinite(value):
        raise CanonicalError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k  # position of the decimal point after the first digit
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _double_text(value: int) -> str | None:
    try:
        return _number(float(value))
    except OverflowError:
        return None


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        text = str(value)
        # Beyond 2^53 only the ECMAScript rendering of a double is canonical (it round-trips).
        if abs(value) > MAX_SAFE_INT and _double_text(value) != text:
            raise CanonicalError(f"integer {value} is beyond ±2^53-1 and has no exact JSON form")
        out.append(text)
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise CanonicalError("an object key is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_encode_str(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"{type(value).__name__} has no JSON form")


# msgspec's sorted output is JCS except for floats, integers past 2^53 and astral-plane keys
# (sorted by code point, not UTF-16 unit). A match here sends a value to the exact slow path;
# a match inside a string is only a needless detour. NaN and infinity are not JSON data: the
# sale validator refuses them before anything is canonicalized.
_NUMBER_NOT_PLAIN = re.compile(  # a whole number token: a fraction, an exponent, or 16+ digits
    rb"[:\[,]-?(?:[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+|[0-9]+\.[0-9]+|[0-9]{16,})(?=[,}\]]|$)"
)
_MAYBE_NOT_PLAIN = re.compile(rb"[0-9][.eE]|[0-9]{16}")  # cheap pre-check for the one above
_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # lead byte of a 4-byte UTF-8 sequence
_sorted_json = msgspec.json.Encoder(order="sorted").encode


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of JSON data (as a JSON decoder returns it)."""
    if isinstance(value, dict | list):
        try:
            fast = _sorted_json(value)
        except (TypeError, UnicodeEncodeError):
            pass
        else:
            plain = not (_MAYBE_NOT_PLAIN.search(fast) and _NUMBER_NOT_PLAIN.search(fast))
            if plain and (fast.isascii() or not _ASTRAL.search(fast)):
                return fast
    return canonical_exact(value)


def canonical_exact(value: Any) -> bytes:
    """The reference implementation of RFC 8785 for JSON data; `canonical` is its fast twin."""
    out: list[str] = []
    _write(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError("a string holds a lone UTF-16 surrogate, which is not text") from exc


def entry_bytes(
    seq: int, sale_id: str, receipt_no: str, created_at: str, sale_json: bytes
) -> bytes:
    """Canonical bytes of an entry, given the sale already in canonical form."""
    # Keys in JCS order: created_at, id, receipt_no, sale, seq. The three strings are written
    # as canonical_exact writes strings: the dict path's number checks cost 4x for nothing.
    head = (
        f'{{"created_at":{_encode_str(created_at)},"id":{_encode_str(sale_id)},'
        f'"receipt_no":{_encode_str(receipt_no)}'
    )
    try:
        head_bytes = head.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError("a string holds a lone UTF-16 surrogate, which is not text") from exc
    return head_bytes + b',"sale":' + sale_json + b',"seq":' + str(seq).encode() + b"}"


def entry_hash(prev_hash: bytes, entry_canonical: bytes) -> bytes:
    """SHA-256(prev_hash || canonical bytes of the entry)."""
    return hashlib.sha256(prev_hash + entry_canonical).digest()
