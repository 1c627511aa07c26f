"""The operations an ESC/POS stream is made of, as the simulated printer reads it.

They are the vocabulary between the parser (edged.sim.escpos), which makes them from bytes,
and what acts on them: the simulated printer's buffer and status (edged.sim.printer) and its
print head (edged.sim.render). Frozen values, no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class LineFeed:
    """LF: print the line buffer and feed one line."""


@dataclass(frozen=True, slots=True)
class Tab:
    """HT: move to the next tab stop (every 8 characters)."""


@dataclass(frozen=True, slots=True)
class Init:
    """ESC @: back to power-on settings."""


@dataclass(frozen=True, slots=True)
class Feed:
    """ESC d n: print the line buffer and feed n lines."""

    lines: int


@dataclass(frozen=True, slots=True)
class FeedDots:
    """ESC J n: print the line buffer and feed n dots."""

    dots: int


@dataclass(frozen=True, slots=True)
class Cut:
    partial: bool
    feed_dots: int = 0


@dataclass(frozen=True, slots=True)
class Style:
    """A text style change. `name`: bold, underline (0-2 dots), font (0 A, 1 B), invert,
    upside_down, align (0 left, 1 center, 2 right), line_spacing (dots, -1 = default),
    print_mode (ESC ! bits: 0 font B, 3 bold, 4 double height, 5 double width, 7 underline),
    size (GS ! n: high nibble width - 1, low nibble height - 1)."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class CodePage:
    """ESC t n; `encoding` is None for a table this printer does not have (ignored)."""

    number: int
    encoding: str | None


@dataclass(frozen=True, slots=True)
class Barcode:
    symbology: str
    data: bytes
    height: int  # dots
    module: int  # dots per narrowest bar
    hri: int  # 0 none, 1 above, 2 below, 3 both


@dataclass(frozen=True, slots=True)
class QrCode:
    data: bytes
    module: int  # dots per module
    error_level: str  # L, M, Q or H


@dataclass(frozen=True, slots=True)
class Raster:
    """A monochrome image, `width` x `height` dots, rows of ceil(width/8) bytes, MSB left,
    bit set = black; printed `scale_x` x `scale_y` times as large."""

    width: int
    height: int
    data: bytes
    scale_x: int = 1
    scale_y: int = 1


@dataclass(frozen=True, slots=True)
class ColumnImage:
    """ESC * m: a strip of `dots` (8 or 24) high columns placed in the line like characters."""

    dots: int
    columns: int
    data: bytes
    double_width: bool


@dataclass(frozen=True, slots=True)
class DrawerKick:
    pin: int  # 2 or 5
    on_ms: int
    off_ms: int


@dataclass(frozen=True, slots=True)
class RealTime:
    """A real-time command (DLE EOT/ENQ/DC4): handled when received, not when printed."""

    name: str
    n: int


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """GS r n: answer with status n once everything before it has been printed."""

    n: int


@dataclass(frozen=True, slots=True)
class AsbRequest:
    """GS a n: Automatic Status Back for the items in n (0 = off)."""

    items: int


@dataclass(frozen=True, slots=True)
class Setting:
    """A known command that changes nothing this simulator draws (tabs, margins, beeper...)."""

    name: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Unknown:
    """Bytes the parser does not know; what follows them is read as text."""

    raw: bytes


Op = (
    Text
    | LineFeed
    | Tab
    | Init
    | Feed
    | FeedDots
    | Cut
    | Style
    | CodePage
    | Barcode
    | QrCode
    | Raster
    | ColumnImage
    | DrawerKick
    | RealTime
    | StatusRequest
    | AsbRequest
    | Setting
    | Unknown
)
