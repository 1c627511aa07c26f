"""Receipt layout settings, checked against the printer profile, and money formatting.

python-escpos is imported only when a layout is checked or resolved: importing its
capabilities database parses a large JSON file, writes a pickle to a fresh temporary directory
and calls `logging.basicConfig()`, none of which belongs at import time.
"""

from __future__ import annotations

import functools
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from edged.devices.printer.escpos_cache import use_shared_cache

MIN_COLUMNS = 16  # narrower paper cannot hold a label and an amount side by side
MAX_COLUMNS = 80
MAX_FEED_LINES = 20
# Dots across the paper when the profile does not say: the narrowest common roll (58 mm).
FALLBACK_WIDTH_DOTS = 384

# ISO 4217 minor-unit exponents that are not 2; every other code has 2.
_EXPONENTS = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}

# Words printed on receipts; `ReceiptLayout.labels` replaces any of them (e.g. German stores).
DEFAULT_LABELS = {
    "store": "Store",
    "terminal": "Terminal",
    "receipt": "Receipt",
    "total": "TOTAL",
    "discount": "Discount",
    "tax": "Tax",
    "auth": "Auth",
    "trace": "Trace",
    "tid": "TID",
    "hash": "hash",
    "copy": "COPY",
}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 code (2 unless known otherwise)."""
    return _EXPONENTS.get(currency, 2)


def format_amount(minor: int, currency: str, separator: str = ".") -> str:
    """1250 EUR -> "12.50", 1250 JPY -> "1250", -5 KWD -> "-0.005"."""
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}{separator}{digits[-exponent:]}"


class ReceiptLayout(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How receipts look on one printer; construction fails with ValueError if it cannot print."""

    profile: str = "default"  # an escpos-printer-db profile name, e.g. "TM-T88V"
    columns: int | None = None  # None: the profile's font A columns
    codepage: str = "CP858"  # ESC t table; must be one the profile lists
    header: tuple[str, ...] = ()  # centered at the top of every receipt and slip
    footer: tuple[str, ...] = ()  # centered at the bottom of sale receipts
    code: Literal["qr", "barcode", "none"] = "qr"  # symbol of the receipt number
    show_hash: bool = True  # print the first 12 hex digits of the journal hash
    currency_symbols: dict[str, str] = msgspec.field(default_factory=lambda: {"EUR": "€"})
    currency_format: str = "{symbol} {amount}"  # for the total; {symbol} falls back to the code
    decimal_separator: Literal[".", ","] = "."
    labels: dict[str, str] = {}  # overrides of DEFAULT_LABELS
    max_name_lines: int = 2  # an item name longer than this many lines is cut short
    feed_lines: int = 0  # blank lines before the cut, on top of python-escpos' own feed
    cut: Literal["full", "partial", "none"] = "full"

    def __post_init__(self) -> None:
        facts = printer_facts(self.profile, self.codepage, self.columns)
        for key in self.labels:
            if key not in DEFAULT_LABELS:
                raise ValueError(
                    f"labels.{key}: unknown label; known ones are {', '.join(DEFAULT_LABELS)}"
                )
        for code, symbol in self.currency_symbols.items():
            if not symbol:
                raise ValueError(f"currency_symbols.{code}: must not be empty")
            if facts.fold(symbol) != symbol:
                raise ValueError(
                    f"currency_symbols.{code}: {symbol!r} cannot be printed with code page "
                    f"{facts.codepage}; use a code page that has it (CP858 has €) or the "
                    f"plain code {code!r}"
                )
        try:
            fields = {
                f for _, f, _, _ in string.Formatter().parse(self.currency_format) if f is not None
            }
        except ValueError as exc:
            raise ValueError(f"currency_format: {exc}") from exc
        if "amount" not in fields or not fields <= {"symbol", "amount"}:
            raise ValueError(
                "currency_format: must contain {amount} and may contain {symbol}, "
                f"got {self.currency_format!r}"
            )
        try:
            for symbol in (*self.currency_symbols.values(), "EUR"):
                self.currency_format.format(symbol=symbol, amount="1.00")
        except ValueError as exc:
            raise ValueError(f"currency_format: {exc}") from exc
        if not 1 <= self.max_name_lines <= 10:
            raise ValueError(f"max_name_lines: must be 1 to 10, got {self.max_name_lines}")
        if not 0 <= self.feed_lines <= MAX_FEED_LINES:
            raise ValueError(f"feed_lines: must be 0 to {MAX_FEED_LINES}, got {self.feed_lines}")

    def label(self, key: str) -> str:
        return self.labels.get(key, DEFAULT_LABELS[key])

    def money(self, minor: int, currency: str) -> str:
        return format_amount(minor, currency, self.decimal_separator)

    def total(self, minor: int, currency: str) -> str:
        """The amount with its currency symbol, as `currency_format` says."""
        symbol = self.currency_symbols.get(currency, currency)
        return self.currency_format.format(symbol=symbol, amount=self.money(minor, currency))


@dataclass(frozen=True, slots=True)
class PrinterFacts:
    """What a layout needs to know about a profile, resolved once per profile and settings."""

    profile: str
    codepage: str  # canonical (upper case) name, as python-escpos wants it
    columns: int
    qr_native: bool  # GS ( k QR codes
    barcode_b: bool  # GS k function B (CODE128)
    image_impl: str | None  # how to send a bitmap, None when the profile cannot
    width_dots: int
    can_print: Callable[[str], bool]  # one character, in this code page

    def fold(self, text: str) -> str:
        """The text as the printer will show it: one column per character, never a control.

        NFC first, so that "e" + combining acute becomes the "é" that CP858 has; control
        characters become spaces (an ESC in a product name must not reach the printer),
        invisible format characters go, and what the code page lacks becomes "?".
        """
        out = []
        for ch in unicodedata.normalize("NFC", text):
            category = unicodedata.category(ch)
            if category in ("Cc", "Zl", "Zp"):
                out.append(" ")
            elif category == "Cf":
                continue
            else:
                out.append(ch if self.can_print(ch) else "?")
        return "".join(out)


def _profile(name: str) -> Any:
    use_shared_cache()
    from escpos.capabilities import CAPABILITIES, get_profile

    if name not in CAPABILITIES["profiles"]:
        known = ", ".join(sorted(CAPABILITIES["profiles"]))
        raise ValueError(f"profile: unknown printer profile {name!r}; python-escpos has {known}")
    return get_profile(name)


@functools.lru_cache(maxsize=32)
def printer_facts(profile_name: str, codepage: str, columns: int | None) -> PrinterFacts:
    """Check a profile, code page and column count together; ValueError says what to change."""
    use_shared_cache()
    from escpos.magicencode import Encoder

    profile = _profile(profile_name)
    pages = profile.get_code_pages()
    canonical = codepage.upper()
    if canonical not in pages:
        raise ValueError(
            f"codepage: profile {profile_name!r} has no code page {codepage!r}; "
            f"it has {', '.join(sorted(pages))}"
        )
    encoder = Encoder(pages)
    try:
        encoder.encode("x", canonical)
    except LookupError as exc:  # listed by the profile, but python-escpos cannot encode it
        raise ValueError(f"codepage: python-escpos cannot encode {canonical}") from exc
    if columns is None:
        columns = int(profile.get_columns("a"))
        if not MIN_COLUMNS <= columns <= MAX_COLUMNS:
            raise ValueError(
                f"columns: profile {profile_name!r} says font A has {columns} columns; "
                f"set columns ({MIN_COLUMNS} to {MAX_COLUMNS}) to what the paper holds"
            )
    elif not MIN_COLUMNS <= columns <= MAX_COLUMNS:
        raise ValueError(f"columns: must be {MIN_COLUMNS} to {MAX_COLUMNS}, got {columns}")
    impls = [i for i in ("bitImageRaster", "graphics", "bitImageColumn") if profile.supports(i)]
    try:
        width_dots = int(profile.media["width"]["pixels"])
    except (KeyError, TypeError, ValueError):  # "Unknown" in many profiles
        width_dots = FALLBACK_WIDTH_DOTS

    def can_print(ch: str) -> bool:
        return bool(encoder.can_encode(canonical, ch))

    return PrinterFacts(
        profile=profile_name,
        codepage=canonical,
        columns=columns,
        qr_native=bool(profile.supports("qrCode")),
        barcode_b=bool(profile.supports("barcodeB")),
        image_impl=impls[0] if impls else None,
        width_dots=width_dots,
        can_print=can_print,
    )
