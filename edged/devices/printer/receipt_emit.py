"""A receipt's operations, and the two ways to play them: ESC/POS bytes and plain text.

The layout pass (edged.devices.printer.receipt) decides every line once; `to_bytes` plays the
operations on python-escpos' `Dummy` printer and `to_text` as the lines the printer prints, so
the bytes and the preview cannot drift apart. python-escpos is imported only when bytes are
built (see edged.devices.printer.layout for why).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Literal

from edged.devices.printer.escpos_cache import use_shared_cache
from edged.devices.printer.layout import PrinterFacts

QR_MODULE_DOTS = 5
BARCODE_MODULE_DOTS = 2  # python-escpos' minimum
BARCODE_HEIGHT_DOTS = 80

Align = Literal["left", "center"]  # pairs are padded to the width and sent flush left
Size = Literal["normal", "tall", "large"]  # tall: double height; large: double width and height


@dataclass(frozen=True, slots=True)
class Style:
    align: Align = "left"
    bold: bool = False
    size: Size = "normal"


@dataclass(frozen=True, slots=True)
class Text:
    text: str  # already folded to the code page and fitted to the width
    style: Style


@dataclass(frozen=True, slots=True)
class Code:
    symbol: Literal["qr", "barcode"]
    data: str


@dataclass(frozen=True, slots=True)
class Feed:
    lines: int


@dataclass(frozen=True, slots=True)
class Cut:
    mode: Literal["FULL", "PART"]  # python-escpos' spelling


Op = Text | Code | Feed | Cut


def to_text(ops: list[Op], columns: int) -> str:
    """The lines the printer prints for `ops`, `columns` wide; codes shown as [QR ...]."""
    out: list[str] = []
    for op in ops:
        if isinstance(op, Text):
            if op.style.align == "center":
                out.append(op.text.center(columns).rstrip())
            else:
                out.append(op.text.rstrip())
        elif isinstance(op, Code):
            name = "QR" if op.symbol == "qr" else "CODE128"
            out.append(f"[{name} {op.data}]".center(columns).rstrip())
        elif isinstance(op, Feed):
            out.extend([""] * op.lines)
    return "\n".join(out) + "\n"


_SIZES: dict[Size, dict[str, bool]] = {
    "normal": {"normal_textsize": True},
    "tall": {"double_height": True},
    "large": {"double_height": True, "double_width": True},
}


def _restyle(printer: Any, want: Style, have: Style | None) -> None:
    """Send only what changed. A size change resends bold: ESC ! also clears emphasis."""
    changes: dict[str, Any] = {}
    if have is None or want.size != have.size:
        changes.update(_SIZES[want.size], bold=want.bold)
    elif want.bold != have.bold:
        changes["bold"] = want.bold
    if have is None or want.align != have.align:
        changes["align"] = want.align
    if changes:
        printer.set(**changes)


def to_bytes(ops: list[Op], facts: PrinterFacts) -> bytes:
    """The ESC/POS bytes of `ops`, built on python-escpos' `Dummy` printer for `facts`."""
    use_shared_cache()
    from escpos.constants import QR_ECLEVEL_M
    from escpos.printer import Dummy

    printer = Dummy(profile=facts.profile)
    # python-escpos prints chatter ("Using hardware barcode renderer") to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        # ESC t once, then every text goes out in that table: the same bytes every time
        # (the automatic mode switches tables by what it printed before, and picks
        # ISO-8859-7 for "€").
        printer.charcode(facts.codepage)
        printer.set_with_default()  # known state even after an interrupted earlier job
        have: Style | None = Style()
        for op in ops:
            if isinstance(op, Text):
                _restyle(printer, op.style, have)
                have = op.style
                printer.textln(op.text)
            elif isinstance(op, Code):
                have = None  # the code commands change alignment
                if op.symbol == "barcode":
                    printer.barcode(
                        "{B" + op.data.replace("{", "{{"),
                        "CODE128",
                        height=BARCODE_HEIGHT_DOTS,
                        width=BARCODE_MODULE_DOTS,
                        pos="BELOW",
                        font="A",
                        align_ct=True,
                        function_type="B",
                    )
                elif facts.qr_native:
                    printer.set(align="center")
                    printer.qr(op.data, ec=QR_ECLEVEL_M, size=QR_MODULE_DOTS, native=True)
                else:
                    printer.qr(
                        op.data,
                        ec=QR_ECLEVEL_M,
                        size=QR_MODULE_DOTS,
                        native=False,
                        image_arguments={"impl": facts.image_impl, "center": True},
                    )
            elif isinstance(op, Feed):
                printer.ln(op.lines)
            else:
                printer.cut(mode=op.mode)
    return bytes(printer.output)
