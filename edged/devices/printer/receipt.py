"""Receipts and slips: a journaled document plus a layout -> ESC/POS bytes, or the same as text.

One layout pass, here, turns a document into a list of operations (lines of text with their
style, codes, feeds, the cut; edged.devices.printer.receipt_emit). `build_receipt` plays them
on python-escpos' `Dummy` printer and `receipt_text` prints them as plain lines, so the bytes
and the preview cannot drift apart.

Documents are plain dicts, as the journal stores them:

- `{"kind": "sale", "store_id", "terminal_id", "seq", "receipt_no", "created_at", "hash",
  "sale": {...}, "local_time"?}`, the sale as journaled (DESIGN.md). Printed: header, store
  and terminal, date and time (`local_time`, the store's time with its zone, e.g.
  "2026-03-29 04:30:00 CEST"; without it `created_at` in UTC), receipt number, the lines
  (name or sku, amount; "qty x unit price" when qty is not the integer 1; a discount line),
  TOTAL, payments (with the card's name, masked PAN, auth code, trace number and terminal
  id), a tax summary when lines carry `tax` (grouped by the line's optional `tax_rate`), the
  hash's first 12 hex digits, the receipt number as QR or barcode, footer.
- `{"kind": "text", "title": str | null, "lines": [str], "code": str | null}`: a free slip
  (X report, note). It gets the layout's header but not its footer (the footer speaks to
  customers); the title in bold double height; the lines wrapped to the column width; `code`
  as the layout's symbol, or as a plain line when the layout's code is "none".

Both kinds carry "*** COPY ***" at the top and the bottom when `copy` is true. Text that the
code page cannot show prints as "?", control characters as spaces; amounts are never cut.
"""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from typing import Any

from edged.devices.printer.layout import PrinterFacts, ReceiptLayout, printer_facts
from edged.devices.printer.receipt_emit import (
    BARCODE_MODULE_DOTS,
    Align,
    Code,
    Cut,
    Feed,
    Op,
    Size,
    Style,
    Text,
    to_bytes,
    to_text,
)
from edged.errors import EdgedError

MAX_SAFE_INT = 2**53 - 1  # larger integers do not survive JSON; the journal never holds them
MAX_CODE_BYTES = 200  # keeps a QR code (module 5 dots, level M) within 58 mm paper
NO_CUT_FEED_LINES = 6  # what python-escpos' cut() feeds, so a tear-off edge clears the text
MIN_LABEL_COLUMNS = 8  # below this a label goes on lines of its own, above its amount
HASH_DIGITS = 12

_QTY = re.compile(r"-?\d{1,9}(\.\d{1,6})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_HEX = re.compile(r"[0-9a-fA-F]{12,128}")
_UTC = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|[+-]00:?00)")


class DocumentError(EdgedError, ValueError):
    """A print document lacks a field or has one of the wrong type; names its JSON path."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def build_receipt(document: dict[str, Any], layout: ReceiptLayout, *, copy: bool) -> bytes:
    """The ESC/POS bytes of a document; DocumentError (a ValueError) if it cannot be printed."""
    facts = _facts(layout)
    return to_bytes(_plan(document, layout, facts, copy=copy), facts)


def receipt_text(document: dict[str, Any], layout: ReceiptLayout, *, copy: bool) -> str:
    """The lines the printer prints for `build_receipt`, as text (codes shown as [QR ...])."""
    facts = _facts(layout)
    return to_text(_plan(document, layout, facts, copy=copy), facts.columns)


def _facts(layout: ReceiptLayout) -> PrinterFacts:
    return printer_facts(layout.profile, layout.codepage, layout.columns)


# --- reading the document: every problem names its JSON path -------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f"{value!r}" if len(value) <= 40 else "a long string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _field(obj: dict[str, Any], path: str, key: str) -> Any:
    if key not in obj:
        raise DocumentError(f"{path}.{key}", "missing")
    return obj[key]


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DocumentError(path, f"must be an object, got {_describe(value)}")
    return value


def _array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise DocumentError(path, f"must be an array, got {_describe(value)}")
    return value


def _string(obj: dict[str, Any], path: str, key: str) -> str:
    value = _field(obj, path, key)
    if not isinstance(value, str) or not value:
        raise DocumentError(f"{path}.{key}", f"must be a non-empty string, got {_describe(value)}")
    return value


def _money(obj: dict[str, Any], path: str, key: str) -> int:
    value = _field(obj, path, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DocumentError(
            f"{path}.{key}", f"must be an integer number of minor units, got {_describe(value)}"
        )
    if abs(value) > MAX_SAFE_INT:
        raise DocumentError(f"{path}.{key}", f"{value} is beyond ±2^53-1")
    return value


def _shown(obj: dict[str, Any], path: str, key: str) -> str | None:
    """An optional field printed as is: a string or a number; absent or null prints nothing."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SAFE_INT:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise DocumentError(f"{path}.{key}", f"must be a string or a number, got {_describe(value)}")


def _qty(line: dict[str, Any], path: str) -> int | str:
    value = _field(line, path, "qty")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SAFE_INT:
        return value
    if isinstance(value, str) and _QTY.fullmatch(value):
        return value
    raise DocumentError(
        f"{path}.qty",
        f'must be an integer count or a decimal string such as "0.350", got {_describe(value)}',
    )


def _when(created_at: str) -> str:
    """RFC 3339 UTC as "2024-05-01 10:15:30 UTC"; anything else exactly as given."""
    match = _UTC.fullmatch(created_at)
    return f"{match[1]} {match[2]} UTC" if match else created_at


# --- the layout pass ---------------------------------------------------------------------


class _Plan:
    """Collects operations; every string goes through the code page fold before measuring."""

    def __init__(self, layout: ReceiptLayout, facts: PrinterFacts) -> None:
        self.layout = layout
        self.facts = facts
        self.columns = facts.columns
        self.ops: list[Op] = []

    def text(
        self, text: str, align: Align = "left", *, bold: bool = False, size: Size = "normal"
    ) -> None:
        """A paragraph wrapped to the width (half of it for double width)."""
        width = self.columns // 2 if size == "large" else self.columns
        style = Style(align, bold, size)
        for line in textwrap.wrap(self.facts.fold(text), width) or [""]:
            self.ops.append(Text(line, style))

    def pair(
        self,
        left: str,
        right: str,
        *,
        indent: int = 0,
        max_lines: int | None = None,
        bold: bool = False,
        size: Size = "normal",
    ) -> None:
        """`left` flush left, `right` flush right on its first line; `right` is never cut."""
        style = Style("left", bold, size)
        left = self.facts.fold(left).strip()
        right = self.facts.fold(right).strip()
        pad = " " * indent
        room = self.columns - len(right) - 1
        if indent + len(left) <= room:
            self.ops.append(Text(pad + left + " " * (room - indent - len(left) + 1) + right, style))
            return
        if room - indent >= MIN_LABEL_COLUMNS:
            lines = textwrap.wrap(left, room, initial_indent=pad, subsequent_indent=pad)
            if max_lines is not None and len(lines) > max_lines:
                lines = lines[:max_lines]
                lines[-1] = lines[-1][: room - 2] + ".."
            first = lines[0]
            self.ops.append(
                Text(first + " " * (self.columns - len(first) - len(right)) + right, style)
            )
            self.ops.extend(Text(line, style) for line in lines[1:])
            return
        width = self.columns
        for line in textwrap.wrap(left, width, initial_indent=pad, subsequent_indent=pad):
            self.ops.append(Text(line, style))
        self.ops.append(Text(right.rjust(self.columns), style))

    def rule(self) -> None:
        self.ops.append(Text("-" * self.columns, Style()))

    def copy_marker(self) -> None:
        marker = f"*** {self.layout.label('copy')} ***"
        fits = len(self.facts.fold(marker)) <= self.columns // 2
        self.text(marker, "center", bold=True, size="large" if fits else "tall")

    def header(self) -> None:
        for line in self.layout.header:
            self.text(line, "center")

    def footer(self) -> None:
        for line in self.layout.footer:
            self.text(line, "center")

    def code(self, data: str, path: str, *, plain_when_none: bool) -> None:
        """The layout's symbol for `data`, falling back to what the profile can print.

        A barcode that is not printable ASCII or too wide for the paper becomes a QR code;
        without QR (native or as an image) the data is printed as a centered line.
        """
        if not data or len(data.encode()) > MAX_CODE_BYTES:
            raise DocumentError(path, f"must be 1 to {MAX_CODE_BYTES} bytes to print as a code")
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in data):
            raise DocumentError(path, "must not contain control characters or line breaks")
        symbol = self.layout.code
        if symbol == "none":
            if plain_when_none:
                self.text(data, "center")
            return
        if symbol == "barcode" and self._barcode_fits(data):
            self.ops.append(Code("barcode", data))
        elif self.facts.qr_native or self.facts.image_impl is not None:
            self.ops.append(Code("qr", data))
        else:
            self.text(data, "center")

    def _barcode_fits(self, data: str) -> bool:
        if not self.facts.barcode_b or not all(0x20 <= ord(ch) < 0x7F for ch in data):
            return False
        # CODE128: start, one symbol per character, check digit (11 modules each), stop (13)
        modules = 11 * (len(data) + 2) + 13
        return modules * BARCODE_MODULE_DOTS <= self.facts.width_dots

    def finish(self) -> None:
        if self.layout.feed_lines:
            self.ops.append(Feed(self.layout.feed_lines))
        if self.layout.cut == "none":
            self.ops.append(Feed(NO_CUT_FEED_LINES))
        else:
            self.ops.append(Cut("FULL" if self.layout.cut == "full" else "PART"))


def _plan(document: Any, layout: ReceiptLayout, facts: PrinterFacts, *, copy: bool) -> list[Op]:
    doc = _object(document, "document")
    kind = doc.get("kind")
    plan = _Plan(layout, facts)
    if copy:
        plan.copy_marker()
    plan.header()
    if kind == "sale":
        _plan_sale(plan, doc)
    elif kind == "text":
        _plan_text(plan, doc)
    else:
        raise DocumentError(
            "document.kind",
            f'must be "sale" or "text", got {_describe(kind)}' if "kind" in doc else "missing",
        )
    if copy:
        plan.copy_marker()
    plan.finish()
    return plan.ops


def _plan_text(plan: _Plan, doc: dict[str, Any]) -> None:
    title = doc.get("title")
    if title is not None:
        if not isinstance(title, str):
            raise DocumentError("document.title", f"must be a string, got {_describe(title)}")
        plan.text(title, "center", bold=True, size="tall")
        plan.rule()
    for i, line in enumerate(_array(_field(doc, "document", "lines"), "document.lines")):
        if not isinstance(line, str):
            raise DocumentError(f"document.lines[{i}]", f"must be a string, got {_describe(line)}")
        plan.text(line)
    code = doc.get("code")
    if code is not None:
        if not isinstance(code, str):
            raise DocumentError("document.code", f"must be a string, got {_describe(code)}")
        plan.code(code, "document.code", plain_when_none=True)


def _plan_sale(plan: _Plan, doc: dict[str, Any]) -> None:
    layout = plan.layout
    store = _string(doc, "document", "store_id")
    terminal = _string(doc, "document", "terminal_id")
    receipt_no = _string(doc, "document", "receipt_no")
    created_at = _string(doc, "document", "created_at")
    digest = _string(doc, "document", "hash")
    if not _HEX.fullmatch(digest):
        raise DocumentError("document.hash", "must be 12 to 128 hexadecimal digits")
    sale = _object(_field(doc, "document", "sale"), "document.sale")
    currency = _string(sale, "document.sale", "currency")
    if not _CURRENCY.fullmatch(currency):
        raise DocumentError("document.sale.currency", f"must be an ISO 4217 code, got {currency!r}")
    total = _money(sale, "document.sale", "total")
    lines = _array(_field(sale, "document.sale", "lines"), "document.sale.lines")
    payments = _array(_field(sale, "document.sale", "payments"), "document.sale.payments")

    plan.pair(f"{layout.label('store')} {store}", f"{layout.label('terminal')} {terminal}")
    local_time = doc.get("local_time")
    plan.text(local_time if isinstance(local_time, str) else _when(created_at))
    plan.pair(layout.label("receipt"), receipt_no)
    plan.rule()
    taxes: dict[str | None, int] = {}
    for i, raw in enumerate(lines):
        path = f"document.sale.lines[{i}]"
        line = _object(raw, path)
        sku = _string(line, path, "sku")
        qty = _qty(line, path)
        amount = _money(line, path, "amount")
        name = _shown(line, path, "name")
        label = name if name and name.strip() else sku
        plan.pair(label, layout.money(amount, currency), max_lines=layout.max_name_lines)
        if qty != 1:
            if "unit_price" in line and line["unit_price"] is not None:
                price = layout.money(_money(line, path, "unit_price"), currency)
                plan.text(f"  {qty} x {price}")
            else:
                plan.text(f"  {qty} x")
        if line.get("discount") is not None:
            discount = _money(line, path, "discount")
            if discount:
                plan.pair(
                    layout.label("discount"), layout.money(-abs(discount), currency), indent=2
                )
        if line.get("tax") is not None:
            rate = _shown(line, path, "tax_rate")
            taxes[rate] = taxes.get(rate, 0) + _money(line, path, "tax")
    plan.rule()
    plan.pair(layout.label("total"), layout.total(total, currency), bold=True, size="tall")
    for i, raw in enumerate(payments):
        path = f"document.sale.payments[{i}]"
        payment = _object(raw, path)
        method = _string(payment, path, "method")
        plan.pair(method, layout.money(_money(payment, path, "amount"), currency))
        if payment.get("card") is not None:
            _plan_card(plan, _object(payment["card"], f"{path}.card"), f"{path}.card")
    if taxes:
        plan.rule()
        for rate, tax in taxes.items():
            label = layout.label("tax")
            if rate is not None:
                label += f" {rate}" if rate.endswith("%") else f" {rate}%"
            plan.pair(label, layout.money(tax, currency))
    plan.rule()
    if layout.show_hash:
        plan.text(f"{layout.label('hash')} {digest[:HASH_DIGITS].lower()}")
    plan.code(receipt_no, "document.receipt_no", plain_when_none=False)
    plan.footer()


_CARD_FIELDS = ("card_name", "masked_pan", "auth_code", "trace_number", "terminal_id")


def _plan_card(plan: _Plan, card: dict[str, Any], path: str) -> None:
    """Only what DESIGN invariant 6 allows on paper: card name, masked PAN, auth, trace, TID."""
    layout = plan.layout
    fields = {key: _shown(card, path, key) for key in _CARD_FIELDS}
    rows = [
        [fields["card_name"], fields["masked_pan"]],
        [
            fields["auth_code"] and f"{layout.label('auth')} {fields['auth_code']}",
            fields["trace_number"] and f"{layout.label('trace')} {fields['trace_number']}",
        ],
        [fields["terminal_id"] and f"{layout.label('tid')} {fields['terminal_id']}"],
    ]
    for row in rows:
        text = "  ".join(part for part in row if part)
        if text:
            plan.text(f"  {text}")


# --- playing the operations ------------------------------------------------------------------
