"""Card data in free text: full PANs, magnetic-stripe tracks, EMV tag 57; and log redaction.

Sans-IO and dependency-free: the sale validation scans every string, number and key with
`find_card_data`; whatever logs what a client sent passes it through `redact` first.

Outside `payments` a PAN is a Luhn-valid run of 15 to 19 digits whose prefix is a card scheme's
IIN, bare or printed in groups (4-4-4-4, 4-4-4-4-1..3, Amex 4-6-5; single spaces or dashes).
13 and 14 digits are left alone there: they cannot be told from GTIN-13/14, one in ten of which
is Luhn-valid. Inside `payments` (`strict`) any Luhn-valid run of 13 to 19 digits counts.
"""

from __future__ import annotations

import re
from decimal import Decimal

# IIN ranges (first digits, inclusive) and PAN lengths; Discover Global Network issues Diners
# and Discover cards up to 19 digits. Mir (2200-2204) is not in every table but is a scheme.
_SCHEMES: tuple[tuple[tuple[tuple[int, int], ...], range], ...] = (
    (((4, 4),), range(13, 20, 3)),  # Visa: 13, 16, 19
    (((51, 55), (2221, 2720)), range(16, 17)),  # Mastercard
    (((34, 34), (37, 37)), range(15, 16)),  # American Express
    (((6011, 6011), (644, 659)), range(16, 20)),  # Discover
    (((3528, 3589),), range(16, 20)),  # JCB
    (((300, 305), (36, 36), (38, 39)), range(14, 20)),  # Diners Club
    (((50, 50), (56, 69)), range(12, 20)),  # Maestro
    (((62, 62),), range(16, 20)),  # UnionPay
    (((2200, 2204),), range(16, 20)),  # Mir
)


def _lengths_by_prefix() -> dict[str, frozenset[int]]:
    """PAN lengths each 4-digit prefix may have, for an O(1) look-up.

    The few distinct sets are shared: one set per prefix would cost about 2 MiB of RSS."""
    table: dict[str, frozenset[int]] = {}
    shared: dict[frozenset[int], frozenset[int]] = {}
    for prefix in range(10000):
        text = f"{prefix:04d}"
        lengths: set[int] = set()
        for ranges, allowed in _SCHEMES:
            for low, high in ranges:
                width = len(str(low))
                if low <= int(text[:width]) <= high:
                    lengths.update(allowed)
        if lengths:
            key = frozenset(lengths)
            table[text] = shared.setdefault(key, key)
    return table


_LENGTHS = _lengths_by_prefix()
SCAN_MIN_CHARS = 13  # shorter text holds no card data (a PAN with its expiry has 16+ digits)
_THIRTEEN_DIGITS = re.compile(r"(?:\d\D*){13}", re.ASCII)
# digits in groups separated by one space or dash; each group is checked on its own and with
# its neighbours in the printed card layouts below
_BLOCK = re.compile(r"\d+(?:[ -]\d+)*", re.ASCII)
_GROUPINGS = ((4, 4, 4, 4), (4, 6, 5))  # 4-4-4-4 may end in a fifth group of 1 to 3 digits
_STRICT_GROUPINGS = ((4, 6, 4),)  # Diners' 14 digits, inside payments only
# track 1 with its % sentinel counts whatever the digits; without it, a PAN must start it
_TRACK1 = re.compile(r"(%?)B(\d{12,19})\^[^^]{0,26}\^\d{4}", re.ASCII)
_TRACK2 = re.compile(r";(\d{12,19})=\d{4}", re.ASCII)
_TRACK2_BARE = re.compile(r"(?<!\d)(\d{12,19})=\d{4}", re.ASCII)
# tag 57 as hex text: PAN, a D nibble, YYMM; alone or right after its tag and length ("5713");
# a lookahead, so that both starts are tried
_TAG57 = re.compile(
    r"(?:(?<![0-9A-Fa-f])|(?<=57[0-9A-Fa-f]{2}))(?=(\d{12,19}) ?[Dd] ?\d{4})", re.ASCII
)
_HEX_BYTES = re.compile(r"[0-9A-Fa-f]{2}(?: [0-9A-Fa-f]{2}){7,}", re.ASCII)
# a UUID, or a digit run inside a hexadecimal token (a hash, a hex order id: 20 or more hex
# characters with letters on both sides of the run): those digits are no card number, however
# they happen to fall (one random UUID in about a million would otherwise read as a grouped
# PAN, and every sale carries one)
_HEX_IDS = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|(?<![0-9A-Za-z])(?=[0-9A-Fa-f]{20,}(?![0-9A-Za-z]))[0-9A-Fa-f]*[A-Fa-f][0-9]{13,}[A-Fa-f]",
    re.ASCII,
)
# a whole GS1 element string in the bracketed form scanners and back offices print, led by
# the item it marks (an SSCC or a GTIN): its lot and serial numbers (AI 10, 21) are up to 20
# characters, often all digits, and one in a hundred 16-digit ones would read as a Visa number
_GS1_BRACKETED = re.compile(
    r"(?:\(00\)\d{18}|\(0[12]\)\d{14})(?:\(\d{2,4}\)[!-'*-~]{1,90})*", re.ASCII
)
_REDACT = re.compile(r"\d(?:[ -]?\d){11,}")  # any script's digits: masking more is harmless
_DIGIT = re.compile(r"\d")


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_pan(digits: str) -> bool:
    """Luhn-valid, with a scheme's prefix and a length that scheme issues."""
    allowed = _LENGTHS.get(digits[:4])
    return allowed is not None and len(digits) in allowed and luhn_ok(digits)


def may_hold_card_data(text: str) -> bool:
    """False for text with fewer than 13 digits, which holds no card data: the fast path."""
    return len(text) >= SCAN_MIN_CHARS and _THIRTEEN_DIGITS.search(text) is not None


def find_card_data(text: str, *, strict: bool = False) -> str | None:
    """What card data `text` holds ("a full card number", "track 2 data", ...), else None."""
    if not may_hold_card_data(text):
        return None
    if "^" in text and any(m[1] or is_pan(m[2]) for m in _TRACK1.finditer(text)):
        return "magnetic stripe track 1 data"
    if "=" in text and (
        _TRACK2.search(text) or any(is_pan(m[1]) for m in _TRACK2_BARE.finditer(text))
    ):
        return "magnetic stripe track 2 data"
    if ("D" in text or "d" in text) and _has_tag57(text):
        return "EMV tag 57 (track 2 equivalent) data"
    if not strict and _GS1_BRACKETED.fullmatch(text):
        return None
    for block in _BLOCK.finditer(_HEX_IDS.sub("#", text)):
        if block.end() - block.start() >= SCAN_MIN_CHARS and _block_has_pan(block[0], strict):
            return "a full card number"
    return None


def find_card_number(number: int | float, *, strict: bool = False) -> str | None:
    """A JSON number that is a full card number. An integral float counts as its integer, read
    both as its exact value and as RFC 8785 writes it (shortest digits, then zeros), which is
    how it comes back from the journal: 3.84531722591351e16 returns as 38453172259135100."""
    if isinstance(number, float):
        if not number.is_integer() or abs(number) >= 1e19:
            return None
        spellings = {int(number), int(Decimal(repr(number)))}
    else:
        spellings = {number}
    for whole in spellings:
        digits = str(abs(whole))
        if len(digits) >= SCAN_MIN_CHARS and _group_is_pan(digits, strict):
            return "a full card number"
    return None


def redact(text: str) -> str:
    """`text` fit for the log: every run of 12 or more digits (spaces or dashes between allowed)
    has each digit replaced by '#'; shorter runs (quantities, ports, error codes) are kept."""
    return _REDACT.sub(lambda m: _DIGIT.sub("#", m[0]), text)


def _group_is_pan(digits: str, strict: bool) -> bool:
    if strict and 13 <= len(digits) <= 19 and luhn_ok(digits):
        return True
    return 15 <= len(digits) <= 19 and is_pan(digits)


def _block_has_pan(block: str, strict: bool) -> bool:
    groups = block.replace("-", " ").split(" ")
    if any(_group_is_pan(g, strict) for g in groups if len(g) >= SCAN_MIN_CHARS):
        return True
    sizes = [len(g) for g in groups]
    layouts = _GROUPINGS + _STRICT_GROUPINGS if strict else _GROUPINGS
    for start in range(len(groups)):
        for layout in layouts:
            end = start + len(layout)
            if tuple(sizes[start:end]) != layout:
                continue
            if _group_is_pan("".join(groups[start:end]), strict):
                return True
            longer = layout == (4, 4, 4, 4) and end < len(groups) and sizes[end] <= 3
            if longer and _group_is_pan("".join(groups[start : end + 1]), strict):
                return True
    return False


def _has_tag57(text: str) -> bool:
    if any(is_pan(m[1]) for m in _TAG57.finditer(text)):
        return True
    for hex_text in _HEX_BYTES.finditer(text):
        joined = hex_text[0].replace(" ", "")
        if any(is_pan(m[1]) for m in _TAG57.finditer(joined)):
            return True
    return False
