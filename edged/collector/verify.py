"""Checking one received entry: well-formed, canonical, and its hash recomputed from the spec."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from edged.chain import MAX_SAFE_INT, CanonicalError, canonical, entry_bytes, entry_hash
from edged.entrykinds import DAMAGED_KEY, GAP_KEY, DamagedEntry, JournalGap, special_of
from edged.wire import Entry

GENESIS_HEX = "00" * 32  # what seq 1 chains from
HASH_HEX_LEN = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Levels of objects and arrays in a sale (the sale itself is level 1). Terminals refuse sales
# past edged.sale.MAX_DEPTH, far below this; every interpreter's own recursion limit (which
# differs: 3.13 decodes 9,000 levels, 3.11 gives up before 1,100) is far above it, so the
# verdict on a deep sale is `invalid` on every Python, never a version's accident.
MAX_SALE_NESTING = 100
_TOO_DEEP = f"sale is nested too deeply (over {MAX_SALE_NESTING} levels of objects and arrays)"
# How the canonical JSON of a special entry's sale begins (RFC 8785: its only key comes first).
_SPECIAL_HEADS = (b'{"' + GAP_KEY.encode() + b'"', b'{"' + DAMAGED_KEY.encode() + b'"')


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an entry is no valid sale: `invalid` (malformed) or `bad_hash`."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Special:
    """A valid entry that is not a sale (edged.entrykinds): it occupies its seq, never a sale row.

    `kind` is `journal_gap` (its hash verifies; `gap` is the (from, to) it declares lost and
    `body` its canonical entry) or `damaged_entry` (its hash cannot verify; `raw` is the
    journal row's bytes it carries).
    """

    kind: str
    detail: str
    gap: tuple[int, int] | None = None
    body: str | None = None
    raw: bytes | None = None


Verdict = str | Rejected | Special  # check_entry's: a sale's canonical body, or what it is


def check_entry(entry: Entry) -> Verdict:
    """The canonical body of a well-formed sale whose hash verifies; else what it is, or why not."""
    body = _accept_fast(entry)
    return body if body is not None else _check_entry_exact(entry)


def _too_deep(raw: bytes, sale: Any) -> bool:
    """True if `sale` (decoded from `raw`) nests objects and arrays past MAX_SALE_NESTING."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_SALE_NESTING:
        return False  # each level opens a bracket: too few brackets for that depth
    stack: list[tuple[Any, int]] = [(sale, 1)]
    while stack:  # iterative: a recursive walk would hit the very limit it guards against
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_SALE_NESTING:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children)
    return False


def _plain(text: str) -> bool:
    """True if RFC 8785 writes `text` verbatim in quotes: printable ASCII without `"` or `\\`."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _no_float(text: str) -> Any:
    raise _HasFloat(text)


class _HasFloat(ValueError):
    """A sale with a float: RFC 8785 writes it its own way (chain.canonical knows how)."""


_DECODE_NO_FLOAT = msgspec.json.Decoder(float_hook=_no_float).decode
_SORTED_JSON = msgspec.json.Encoder(order="sorted").encode
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16
_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # lead byte of a 4-byte UTF-8 sequence


def _sale_canonical(raw: msgspec.Raw) -> tuple[Any, bytes | None]:
    """The decoded sale and its RFC 8785 bytes, or None for them where `canonical` must decide.

    msgspec's sorted compact output is RFC 8785's for JSON without floats, integers past 2^53
    and astral-plane keys (chain.canonical says why). Floats are seen while decoding; a run of
    16 digits (perhaps only inside a string) and astral bytes by C-speed byte scans. That is
    what `canonical` checks too, with a regex that costs twice the encoding here.
    """
    try:
        sale = _DECODE_NO_FLOAT(raw)
    except msgspec.ValidationError as exc:
        if not isinstance(exc.__cause__ or exc.__context__, _HasFloat):
            raise
        return msgspec.json.decode(raw), None
    try:
        fast = _SORTED_JSON(sale)
    except (TypeError, UnicodeEncodeError):  # canonical's exact path says what is wrong
        return sale, None
    if _SIXTEEN_DIGITS in fast.translate(_DIGITS_AS_ZERO):
        return sale, None
    if not fast.isascii() and _ASTRAL.search(fast):
        return sale, None
    return sale, fast


def _accept_fast(entry: Entry) -> str | None:
    """`_check_entry_exact`'s body for an entry it accepts, cheaper; None means "ask it".

    It accepts nothing the exact check would refuse. The sale is still `canonical(sale)` and the
    hash still `entry_hash` over the entry's canonical bytes; those bytes are assembled here
    (as `entry_bytes` would) only when every string field is plain, so it needs no escaping.
    """
    seq, sale_id, receipt_no, created_at = entry.seq, entry.id, entry.receipt_no, entry.created_at
    prev_hex, hash_hex = entry.prev_hash, entry.hash
    if not (
        type(seq) is int
        and 1 <= seq <= MAX_SAFE_INT
        and sale_id
        and receipt_no
        and created_at
        and len(prev_hex) == HASH_HEX_LEN
        and _plain(sale_id)
        and _plain(receipt_no)
        and _plain(created_at)
    ):
        return None
    try:
        sale, sale_json = _sale_canonical(entry.sale)
        if not isinstance(sale, dict) or _too_deep(bytes(entry.sale), sale):
            return None
        if sale_json is None:
            sale_json = canonical(sale)
        prev = bytes.fromhex(prev_hex)
    except (ValueError, TypeError, RecursionError):  # DecodeError and CanonicalError included
        return None
    if sale_json.startswith(_SPECIAL_HEADS):
        return None  # perhaps no sale: the exact check tells
    if prev.hex() != prev_hex:  # fromhex also takes upper case and spaces
        return None
    # Keys in RFC 8785 order: created_at, id, receipt_no, sale, seq (as `entry_bytes`).
    tail = b'","receipt_no":"%b","sale":%b,"seq":%d}' % (receipt_no.encode(), sale_json, seq)
    hashed = b'{"created_at":"%b","id":"%b%b' % (created_at.encode(), sale_id.encode(), tail)
    # hex() of a digest is 64 lowercase hex digits: equality also proves the format of `hash`.
    if entry_hash(prev, hashed).hex() != hash_hex:
        return None
    # The body adds hash and prev_hash: created_at, hash, id, prev_hash, receipt_no, sale, seq.
    body = b'{"created_at":"%b","hash":"%b","id":"%b","prev_hash":"%b%b' % (
        created_at.encode(),
        hash_hex.encode(),
        sale_id.encode(),
        prev_hex.encode(),
        tail,
    )
    return body.decode()


def _check_entry_exact(entry: Entry) -> str | Rejected | Special:
    """The reference check: every rejection and special entry, with its reason, comes from here."""
    if not 1 <= entry.seq <= MAX_SAFE_INT:
        return Rejected("invalid", f"seq {entry.seq} is not in 1..2^53-1")
    damaged = special_of(bytes(entry.sale))
    if isinstance(damaged, DamagedEntry):  # its other fields may be damaged too: nothing to check
        return _damaged(damaged)
    for name, value in (("prev_hash", entry.prev_hash), ("hash", entry.hash)):
        if not _HEX64.fullmatch(value):
            return Rejected("invalid", f"{name} is not 64 lowercase hex digits")
    if not entry.id or not entry.receipt_no or not entry.created_at:
        return Rejected("invalid", "id, receipt_no and created_at must be non-empty")
    try:
        sale = msgspec.json.decode(entry.sale)
        if not isinstance(sale, dict):
            return Rejected("invalid", "sale is not a JSON object")
        if _too_deep(bytes(entry.sale), sale):
            return Rejected("invalid", _TOO_DEEP)
        sale_json = canonical(sale)
        head = canonical(
            {
                "created_at": entry.created_at,
                "hash": entry.hash,
                "id": entry.id,
                "prev_hash": entry.prev_hash,
                "receipt_no": entry.receipt_no,
            }
        )
        computed = entry_hash(
            bytes.fromhex(entry.prev_hash),
            entry_bytes(entry.seq, entry.id, entry.receipt_no, entry.created_at, sale_json),
        ).hex()
    except (msgspec.DecodeError, CanonicalError) as exc:
        return Rejected("invalid", f"sale has no canonical JSON form: {exc}")
    except RecursionError:  # this interpreter cannot even decode it
        return Rejected("invalid", _TOO_DEEP)
    if computed != entry.hash:
        return Rejected("bad_hash", f"hash does not match the entry (computed {computed})")
    # Keys in RFC 8785 order: created_at, hash, id, prev_hash, receipt_no, sale, seq.
    body = head[:-1] + b',"sale":' + sale_json + b',"seq":' + str(entry.seq).encode() + b"}"
    special = special_of(sale_json)
    if isinstance(special, JournalGap):
        return _gap(entry.seq, special, body.decode("utf-8"))
    if isinstance(special, DamagedEntry):
        return _damaged(special)
    return body.decode("utf-8")


def _gap(seq: int, gap: JournalGap, body: str) -> Special | Rejected:
    """A journal_gap entry at `seq`: it must declare the seqs right before it (from <= to + 1)."""
    first, to = gap.first, gap.to
    if to != seq - 1 or not 1 <= first <= seq:
        return Rejected(
            "invalid",
            f"journal_gap at seq {seq} declares seqs {first}..{to}; "
            f"it must end at seq {seq - 1} and start at 1..{seq}",
        )
    what = f"seqs {first}..{to}" if first <= to else "no seqs"
    detail = f"the terminal's journal lost {what} ({gap.reason})"
    return Special(GAP_KEY, detail, gap=(first, to), body=body)


def _damaged(damaged: DamagedEntry) -> Special:
    """A damaged_entry: kept with the row's bytes; its hash cannot verify, by nature."""
    detail = f"the terminal's journal row is damaged ({damaged.problem})"
    try:
        raw = base64.b64decode(damaged.raw, validate=True)
    except binascii.Error:
        raw = damaged.raw.encode("utf-8", "replace")
        detail += "; its raw bytes are not base64, kept as sent"
    return Special(DAMAGED_KEY, detail, raw=raw)
