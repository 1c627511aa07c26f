"""Validation of a sale as a POS UI sends it; every problem names its JSON path."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from edged.carddata import SCAN_MIN_CHARS, find_card_data, find_card_number, may_hold_card_data
from edged.chain import MAX_SAFE_INT, CanonicalError, canonical_exact
from edged.errors import Problem, ValidationError
from edged.iso4217 import currency_problem

MONEY_KEYS = frozenset({"total", "amount", "unit_price", "discount", "tax"})
# Card secrets that must never be stored (DESIGN invariant 6).
SECRET_KEYS = frozenset(
    {
        "pan",
        "card_number",
        "cardnumber",
        "track",
        "track1",
        "track2",
        "track3",
        "track_data",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "cid",
        "pin",
        "pin_block",
    }
)
MAX_PROBLEMS = 50
MAX_DEPTH = 32  # nesting of objects and arrays; far beyond any real sale
_DECIMAL_QTY = re.compile(r"-?\d{1,9}(\.\d{1,6})?")
# First 6 and last 4 at most; terminals that reveal only the last 4 are fine too.
_MASKED_PAN = re.compile(r"(?:\d{6}[*Xx]{3,9}|[*Xx]{2,15})\d{4}")
_SCANNED_INT = 10**12  # smaller integers have fewer than 13 digits: no card number
_NO_CARD_DATA = (
    "card data must not be stored (only masked_pan, scheme, auth_code, terminal_ref); "
    "the value is not repeated here"
)
_SPECIAL_KEYS = SECRET_KEYS | MONEY_KEYS | {"masked_pan"}
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _is_uuid(text: str) -> bool:
    if _CANONICAL_UUID.fullmatch(text):
        return True  # the usual spelling, which uuid.UUID accepts; the rest is checked by it
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _kind(value: Any) -> str:
    """What a wrong value is, for a problem text; never repeats 13 or more digits (card data)."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        text = repr(value)
        return text if not may_hold_card_data(text) else "a number of many digits"
    if isinstance(value, str):
        if len(value) > 40:
            return "a long string"
        return f'"{value}"' if not may_hold_card_data(value) else "a string of many digits"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_double(value: int) -> bool:
    """Whether an integer past ±2^53-1 is how RFC 8785 writes a double (1e20 is written
    100000000000000000000): such a sale read back with sale.get and sent again must commit
    as the same sale."""
    try:
        return canonical_exact(value) == str(value).encode()
    except CanonicalError:
        return False


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(path, problem))

    def money(self, path: str, value: Any) -> None:
        if not _is_int(value):
            self.add(path, f"must be an integer number of minor units, got {_kind(value)}")
        elif abs(value) > MAX_SAFE_INT:
            self.add(path, f"must be within ±{MAX_SAFE_INT} minor units, got {value}")

    def walk(self, path: str, value: Any, *, in_payment: bool, depth: int = 0) -> None:
        """Checks that hold anywhere in a sale: money keys, safe integers, no card data.

        Hot path (every commit): plain str/int children are checked inline, text shorter than
        13 characters and integers below 10^12 (fewer than 13 digits) are never scanned, and a
        child's path is only built when it is reported or descended into.
        """
        if depth > MAX_DEPTH and isinstance(value, dict | list):
            self.add(path, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(value, dict):
            for key, item in value.items():
                if len(key) >= SCAN_MIN_CHARS and (found := find_card_data(key, strict=in_payment)):
                    self.add(path, f"has a key that looks like {found}; {_NO_CARD_DATA}")
                    continue  # the path must not carry the key
                lowered = key.lower()
                if lowered in _SPECIAL_KEYS:
                    if lowered in SECRET_KEYS:
                        self.add(
                            f"{path}.{key}",
                            "card secrets (full PAN, track data, CVV, PIN) must not be "
                            "stored; keep only masked_pan, scheme, auth_code, terminal_ref",
                        )
                        continue
                    if lowered in MONEY_KEYS and not (
                        type(item) is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT
                    ):
                        self.money(f"{path}.{key}", item)
                    if lowered == "masked_pan" and not (
                        isinstance(item, str) and _MASKED_PAN.fullmatch(item)
                    ):
                        self.add(
                            f"{path}.{key}",
                            "must be first 6 and last 4 digits with the middle masked, "
                            "e.g. 411111******1111, or only the last 4 (************1111)",
                        )
                        continue
                kind = type(item)
                paying = in_payment or (key == "payments" and path == "sale")
                if kind is str:
                    if len(item) >= SCAN_MIN_CHARS:
                        self.text(f"{path}.{key}", item, in_payment=paying)
                    continue
                if kind is int and -_SCANNED_INT < item < _SCANNED_INT:
                    continue
                self.walk(f"{path}.{key}", item, in_payment=paying, depth=depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                kind = type(item)
                if kind is str:
                    if len(item) >= SCAN_MIN_CHARS:
                        self.text(f"{path}[{i}]", item, in_payment=in_payment)
                    continue
                if kind is int and -_SCANNED_INT < item < _SCANNED_INT:
                    continue
                self.walk(f"{path}[{i}]", item, in_payment=in_payment, depth=depth + 1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if found := find_card_number(value, strict=in_payment):
                self.add(path, f"looks like {found}; {_NO_CARD_DATA}")
            elif isinstance(value, int) and abs(value) > MAX_SAFE_INT and not _is_double(value):
                self.add(
                    path,
                    f"integer of {len(str(abs(value)))} digits is beyond ±2^53-1, "
                    "which JSON cannot carry exactly",
                )
            elif isinstance(value, float) and not math.isfinite(value):
                self.add(path, f"{value} is not a number JSON can carry")

    def text(self, path: str, value: str, *, in_payment: bool) -> None:
        if found := find_card_data(value, strict=in_payment):
            self.add(path, f"looks like {found}; {_NO_CARD_DATA}")

    def string(self, obj: dict[str, Any], path: str, key: str) -> str | None:
        value = obj.get(key)
        if value is None and key not in obj:
            self.add(f"{path}.{key}", "is required")
            return None
        if not isinstance(value, str) or not value:
            self.add(f"{path}.{key}", f"must be a non-empty string, got {_kind(value)}")
            return None
        return value

    def required_money(self, obj: dict[str, Any], path: str, key: str) -> int | None:
        if key not in obj:
            self.add(f"{path}.{key}", "is required")
            return None
        value = obj[key]
        return value if _is_int(value) else None  # the walk reports a wrong type

    def objects(self, sale: dict[str, Any], key: str, *, non_empty: bool) -> list[Any]:
        path = f"sale.{key}"
        value = sale.get(key)
        if key not in sale:
            self.add(path, "is required")
            return []
        if not isinstance(value, list):
            self.add(path, f"must be an array, got {_kind(value)}")
            return []
        if non_empty and not value:
            self.add(path, "must hold at least one entry")
        good = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                good.append((f"{path}[{i}]", item))
            else:
                self.add(f"{path}[{i}]", f"must be an object, got {_kind(item)}")
        return good


def validate_sale(sale: Any) -> dict[str, Any]:
    """Return the sale unchanged if it honours the v1 contract, else raise ValidationError."""
    c = _Checker()
    if not isinstance(sale, dict):
        raise ValidationError([Problem("sale", f"must be an object, got {_kind(sale)}")])
    sale_id = c.string(sale, "sale", "id")
    if sale_id is not None and not _is_uuid(sale_id):
        c.add("sale.id", "must be a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    if "currency" not in sale:
        c.add("sale.currency", "is required")
    elif (problem := currency_problem(sale["currency"])) is not None:
        c.add("sale.currency", problem)
    total = c.required_money(sale, "sale", "total")
    for path, line in c.objects(sale, "lines", non_empty=True):
        c.string(line, path, "sku")
        c.required_money(line, path, "amount")
        if "qty" not in line:
            c.add(f"{path}.qty", "is required")
        else:
            qty = line["qty"]
            if not (_is_int(qty) or (isinstance(qty, str) and _DECIMAL_QTY.fullmatch(qty))):
                c.add(
                    f"{path}.qty",
                    "must be an integer count or a decimal string such as "
                    f'"0.350", got {_kind(qty)}',
                )
    paid = 0
    payments = c.objects(sale, "payments", non_empty=False)
    for path, payment in payments:
        c.string(payment, path, "method")
        amount = c.required_money(payment, path, "amount")
        paid += amount or 0
    if "meta" in sale and not isinstance(sale["meta"], dict):
        c.add("sale.meta", f"must be an object, got {_kind(sale['meta'])}")
    c.walk("sale", sale, in_payment=False)
    if total is not None and not c.problems and paid != total:
        c.add("sale.payments", f"amounts add up to {paid}, but sale.total is {total}")
    if c.problems:
        raise ValidationError(c.problems)
    return sale
