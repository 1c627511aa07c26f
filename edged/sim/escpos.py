"""The ESC/POS byte stream as a printer reads it, sans-IO: bytes in, operations out.

`EscPosParser.feed(data)` returns the operations (edged.sim.escpos_ops) the bytes complete, in
any chunking; a command cut at the end of a chunk waits for the rest. Text is decoded with the
code page chosen by `ESC t n` (Epson numbering). A command the parser does not know becomes
`Unknown` with its first bytes, and its parameters then read as text — what a real printer
does, more or less: ignore what it does not know, or misprint it. The parser never raises.

Lengths follow Epson's ESC/POS command reference; the commands python-escpos 3.1 emits
(text, `ESC t`, `ESC !/E/a/-/M/{`, `GS !/B/b`, `GS ( k` QR, `GS k` barcodes, `GS v 0` and
`GS ( L` raster images, `ESC *` column images, `ESC d`, `GS V`, `ESC p`, `ESC B`) are all
understood; `tests/unit/test_sim_escpos.py` checks them against python-escpos's own output.
"""

from __future__ import annotations

from edged.sim.escpos_ops import (
    AsbRequest,
    Barcode,
    CodePage,
    ColumnImage,
    Cut,
    DrawerKick,
    Feed,
    FeedDots,
    Init,
    LineFeed,
    Op,
    QrCode,
    Raster,
    RealTime,
    Setting,
    StatusRequest,
    Style,
    Tab,
    Text,
    Unknown,
)

# Epson's `ESC t n` numbers for the code pages Python can decode (TM-T88V/TM-T20II tables).
CODE_PAGES = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    13: "cp857",
    14: "cp737",
    15: "iso8859_7",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
    32: "cp720",
    33: "cp775",
    34: "cp855",
    35: "cp861",
    36: "cp862",
    37: "cp864",
    38: "cp869",
    39: "iso8859_2",
    40: "iso8859_15",
    44: "cp1125",
    45: "cp1250",
    46: "cp1251",
    47: "cp1253",
    48: "cp1254",
    49: "cp1255",
    50: "cp1256",
    51: "cp1257",
    52: "cp1258",
    53: "kz1048",
}

# GS k: m -> symbology. Function A (m 0..6) ends with NUL, function B (m 65..) has a length.
BARCODES_A = {0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR"}
BARCODES_B = {
    65: "UPC-A",
    66: "UPC-E",
    67: "EAN13",
    68: "EAN8",
    69: "CODE39",
    70: "ITF",
    71: "CODABAR",
    72: "CODE93",
    73: "CODE128",
    74: "GS1-128",
    75: "GS1 DataBar Omnidirectional",
    76: "GS1 DataBar Truncated",
    77: "GS1 DataBar Limited",
    78: "GS1 DataBar Expanded",
    79: "CODE128 auto",
}
QR_ERROR_LEVELS = {48: "L", 49: "M", 50: "Q", 51: "H"}

MAX_DATA_BYTES = 4 * 1024 * 1024  # a command announcing more is skipped, never buffered
MAX_NUL_SEARCH = 256  # GS k function A and ESC D end with NUL within this many bytes

NUL, HT, LF, FF, CR, DLE, CAN, ESC, FS, GS = 0, 9, 10, 12, 13, 16, 24, 27, 28, 29
EOT, ENQ, DC4 = 4, 5, 20


# ESC x with a fixed total length (including ESC and x) and nothing to draw.
_ESC_SETTINGS = {
    FF: ("print page", 2),
    ord(" "): ("right spacing", 3),
    ord("$"): ("absolute position", 4),
    ord("%"): ("user characters on/off", 3),
    ord("="): ("select peripheral", 3),
    ord("?"): ("cancel user character", 3),
    ord("L"): ("page mode", 2),
    ord("R"): ("international characters", 3),
    ord("S"): ("standard mode", 2),
    ord("T"): ("page direction", 3),
    ord("U"): ("unidirectional printing", 3),
    ord("V"): ("rotate 90", 3),
    ord("W"): ("page area", 10),
    ord("\\"): ("relative position", 4),
    ord("e"): ("reverse feed", 3),
    ord("r"): ("color", 3),
    ord("u"): ("peripheral status", 3),
    ord("v"): ("paper status", 2),
    ord("B"): ("beeper", 4),
}
# GS x with a fixed total length and nothing to draw.
_GS_SETTINGS = {
    ord("$"): ("absolute vertical position", 4),
    ord("/"): ("print downloaded image", 3),
    ord(":"): ("macro", 2),
    ord("E"): ("head control", 3),
    ord("I"): ("printer id", 3),
    ord("L"): ("left margin", 4),
    ord("P"): ("motion units", 4),
    ord("T"): ("line start", 3),
    ord("W"): ("print area width", 4),
    ord("\\"): ("relative vertical position", 4),
    ord("^"): ("run macro", 5),
    ord("c"): ("counter", 2),
    ord("j"): ("ink status back", 3),
    ord("z"): ("online recovery wait", 4),
}
# FS x with a fixed total length (kanji modes, NV images): nothing this simulator draws.
_FS_SETTINGS = {
    ord("!"): ("kanji mode", 3),
    ord("&"): ("kanji on", 2),
    ord("-"): ("kanji underline", 3),
    ord("."): ("kanji off", 2),
    ord("C"): ("kanji code", 3),
    ord("S"): ("kanji spacing", 4),
    ord("W"): ("kanji quadruple", 3),
    ord("p"): ("print NV image", 4),
}
_STYLE_BYTES = {
    ord("E"): "bold",
    ord("G"): "bold",  # double-strike looks like bold on thermal paper
    ord("-"): "underline",
    ord("M"): "font",
    ord("{"): "upside_down",
}


class _Need(Exception):
    """More bytes are needed to finish the command at the start of the buffer."""


class EscPosParser:
    """Reads an ESC/POS stream into operations, keeping the printer's parsing state."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized command still to drop
        self._reset()

    def _reset(self) -> None:
        self.encoding = CODE_PAGES[0]
        self._bar_height, self._bar_module, self._hri = 162, 3, 0
        self._qr_module, self._qr_level, self._qr_data = 3, "L", b""
        self._graphics: Raster | None = None  # GS ( L stored, waiting for "print"

    def feed(self, data: bytes) -> list[Op]:
        ops: list[Op] = []
        view = memoryview(data)
        if self._skip:
            dropped = min(self._skip, len(view))
            self._skip -= dropped
            view = view[dropped:]
        self._buf += view
        while self._buf:
            try:
                op, used = self._next()
            except _Need:
                break
            del self._buf[:used]
            if op is not None:
                ops.append(op)
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                self._skip -= dropped
                del self._buf[:dropped]
        return ops

    # --- one command at the start of the buffer -------------------------------------------

    def _byte(self, i: int) -> int:
        if i >= len(self._buf):
            raise _Need
        return self._buf[i]

    def _take(self, start: int, count: int) -> bytes:
        if start + count > len(self._buf):
            raise _Need
        return bytes(self._buf[start : start + count])

    def _next(self) -> tuple[Op | None, int]:
        first = self._buf[0]
        if first >= 0x20:
            end = 1
            while end < len(self._buf) and self._buf[end] >= 0x20:
                end += 1
            return Text(self._buf[:end].decode(self.encoding, errors="replace")), end
        if first == LF:
            return LineFeed(), 1
        if first == HT:
            return Tab(), 1
        if first == CR:
            return None, 1  # standard mode, auto line feed off: CR does nothing
        if first == CAN:
            return Setting("cancel page data", b"\x18"), 1
        if first == FF:
            return Setting("print page", b"\x0c"), 1
        if first == ESC:
            return self._esc()
        if first == GS:
            return self._gs()
        if first == DLE:
            return self._dle()
        if first == FS:
            return self._fs()
        return Unknown(bytes((first,))), 1

    def _esc(self) -> tuple[Op | None, int]:
        cmd = self._byte(1)
        if cmd == ord("@"):
            self._reset()
            return Init(), 2
        if cmd == ord("t"):
            n = self._byte(2)
            encoding = CODE_PAGES.get(n)
            if encoding is not None:
                self.encoding = encoding
            return CodePage(n, encoding), 3
        if cmd == ord("!"):
            return Style("print_mode", self._byte(2)), 3
        if cmd in _STYLE_BYTES:
            return Style(_STYLE_BYTES[cmd], self._byte(2)), 3
        if cmd == ord("a"):
            return Style("align", self._byte(2) % 48), 3
        if cmd == ord("2"):
            return Style("line_spacing", -1), 2
        if cmd == ord("3"):
            return Style("line_spacing", self._byte(2)), 3
        if cmd == ord("d"):
            return Feed(self._byte(2)), 3
        if cmd == ord("J"):
            return FeedDots(self._byte(2)), 3
        if cmd == ord("p"):
            m, t1, t2 = self._take(2, 3)
            return DrawerKick(2 if m % 48 == 0 else 5, t1 * 2, t2 * 2), 5
        if cmd in (ord("i"), ord("m")):  # obsolete cuts
            return Cut(partial=cmd == ord("m")), 2
        if cmd == ord("*"):
            return self._column_image()
        if cmd == ord("D"):
            return self._until_nul("tab stops", 2, 33)
        if cmd == ord("c"):
            sub = self._byte(2)
            if sub in (ord("3"), ord("4"), ord("5")):
                return Setting("paper sensors / panel buttons", self._take(0, 4)), 4
            return Unknown(self._take(0, 3)), 3
        if cmd == ord("("):
            return self._sized(5, "ESC (", 2)
        if cmd == ord("&"):
            return self._user_characters()
        if cmd in _ESC_SETTINGS:
            name, length = _ESC_SETTINGS[cmd]
            return Setting(name, self._take(0, length)), length
        return Unknown(self._take(0, 2)), 2

    def _gs(self) -> tuple[Op | None, int]:
        cmd = self._byte(1)
        if cmd == ord("!"):
            return Style("size", self._byte(2)), 3
        if cmd == ord("B"):
            return Style("invert", self._byte(2)), 3
        if cmd == ord("b"):
            return Setting("smoothing", self._take(0, 3)), 3
        if cmd == ord("V"):
            m = self._byte(2)
            if m in (0, 1, 48, 49):
                return Cut(partial=m % 48 == 1), 3
            if m in (65, 66, 97, 98, 103, 104):
                return Cut(partial=m in (66, 98, 104), feed_dots=self._byte(3)), 4
            return Unknown(self._take(0, 3)), 3
        if cmd == ord("h"):
            self._bar_height = self._byte(2) or 1
            return Setting("barcode height", self._take(0, 3)), 3
        if cmd == ord("w"):
            self._bar_module = self._byte(2)
            return Setting("barcode module width", self._take(0, 3)), 3
        if cmd == ord("H"):
            self._hri = self._byte(2) % 48
            return Setting("barcode HRI position", self._take(0, 3)), 3
        if cmd == ord("f"):
            return Setting("barcode HRI font", self._take(0, 3)), 3
        if cmd == ord("k"):
            return self._barcode()
        if cmd == ord("v"):
            if self._byte(2) != ord("0"):
                return Unknown(self._take(0, 3)), 3
            return self._raster()
        if cmd == ord("("):
            kind = self._byte(2)
            if kind == ord("k"):
                return self._two_d_code()
            if kind == ord("L"):
                return self._graphics_command(5, 2)
            return self._sized(5, "GS (", 2)
        if cmd == ord("8") and self._byte(2) == ord("L"):
            return self._graphics_command(7, 4)
        if cmd == ord("r"):
            return StatusRequest(self._byte(2) % 48), 3
        if cmd == ord("a"):
            return AsbRequest(self._byte(2)), 3
        if cmd == ord("*"):
            x, y = self._take(2, 2)
            return self._skip_data("define downloaded image", 4, x * y * 8)
        if cmd in _GS_SETTINGS:
            name, length = _GS_SETTINGS[cmd]
            return Setting(name, self._take(0, length)), length
        return Unknown(self._take(0, 2)), 2

    def _dle(self) -> tuple[Op | None, int]:
        cmd = self._byte(1)
        if cmd == EOT:
            return RealTime("DLE EOT", self._byte(2)), 3
        if cmd == ENQ:
            return RealTime("DLE ENQ", self._byte(2)), 3
        if cmd == DC4:
            fn = self._byte(2)
            if fn in (1, 2):
                self._take(0, 5)
                return RealTime("DLE DC4", fn), 5
            return Unknown(self._take(0, 3)), 3
        return Unknown(self._take(0, 2)), 2

    def _fs(self) -> tuple[Op | None, int]:
        cmd = self._byte(1)
        if cmd == ord("("):
            return self._sized(5, "FS (", 2)
        if cmd in _FS_SETTINGS:
            name, length = _FS_SETTINGS[cmd]
            return Setting(name, self._take(0, length)), length
        return Unknown(self._take(0, 2)), 2

    # --- commands with data ---------------------------------------------------------------

    def _sized(self, header: int, family: str, length_bytes: int) -> tuple[Op | None, int]:
        """A `pL pH` (or 4-byte) length after the header's first bytes; content not drawn."""
        size = self._length(header - length_bytes, length_bytes)
        name = f"{family} {chr(self._buf[2])}"
        return self._skip_data(name, header, size)

    def _length(self, at: int, count: int) -> int:
        raw = self._take(at, count)
        return int.from_bytes(raw, "little")

    def _skip_data(self, name: str, header: int, size: int) -> tuple[Op | None, int]:
        """A command of `header` bytes plus `size` data bytes that draws nothing."""
        if size > MAX_DATA_BYTES:
            return self._oversized(name, header, size)
        return Setting(name, self._take(0, min(header + size, header + 64))), self._whole(
            header + size
        )

    def _whole(self, length: int) -> int:
        if length > len(self._buf):
            raise _Need
        return length

    def _oversized(self, name: str, header: int, size: int) -> tuple[Op, int]:
        """Too big to buffer: drop its data as it streams past."""
        raw = self._take(0, header)
        self._skip = size
        return Unknown(raw + f" ({name}: {size} data bytes skipped)".encode()), header

    def _until_nul(self, name: str, start: int, limit: int) -> tuple[Op | None, int]:
        end = self._buf.find(NUL, start, start + limit)
        if end < 0:
            if len(self._buf) < start + limit:
                raise _Need
            return Unknown(self._take(0, start)), start
        return Setting(name, self._take(0, end + 1)), end + 1

    def _user_characters(self) -> tuple[Op | None, int]:
        """ESC & y c1 c2 [x d1..d(y*x)]...: define user characters (not drawn)."""
        y, c1, c2 = self._take(2, 3)
        at = 5
        for _ in range(max(0, c2 - c1 + 1)):
            x = self._byte(at)
            at += 1 + y * x
            if at > MAX_DATA_BYTES:
                return self._oversized("ESC &", 5, at - 5)
        return Setting("define user characters", self._take(0, min(at, 64))), self._whole(at)

    def _column_image(self) -> tuple[Op | None, int]:
        m, low, high = self._take(2, 3)
        columns = low + high * 256
        if m in (0, 1):
            dots = 8
        elif m in (32, 33):
            dots = 24
        else:
            return Unknown(self._take(0, 3)), 3
        size = columns * dots // 8
        data = self._take(5, size)
        return ColumnImage(dots, columns, data, double_width=m in (0, 32)), 5 + size

    def _barcode(self) -> tuple[Op | None, int]:
        m = self._byte(2)
        if m in BARCODES_A:
            end = self._buf.find(NUL, 3, 3 + MAX_NUL_SEARCH)
            if end < 0:
                if len(self._buf) < 3 + MAX_NUL_SEARCH:
                    raise _Need
                return Unknown(self._take(0, 3)), 3
            data = self._take(3, end - 3)
            return self._bar(BARCODES_A[m], data), end + 1
        if m in BARCODES_B:
            n = self._byte(3)
            return self._bar(BARCODES_B[m], self._take(4, n)), 4 + n
        return Unknown(self._take(0, 3)), 3

    def _bar(self, symbology: str, data: bytes) -> Barcode:
        return Barcode(symbology, data, self._bar_height, self._bar_module, self._hri)

    def _raster(self) -> tuple[Op | None, int]:
        """GS v 0 m xL xH yL yH d...: x bytes across, y rows."""
        m, xl, xh, yl, yh = self._take(3, 5)
        width_bytes, height = xl + xh * 256, yl + yh * 256
        size = width_bytes * height
        if size > MAX_DATA_BYTES:
            return self._oversized("GS v 0", 8, size)
        data = self._take(8, size)
        scale = m % 48
        op = Raster(width_bytes * 8, height, data, 1 + (scale & 1), 1 + (scale >> 1 & 1))
        return op, 8 + size

    def _two_d_code(self) -> tuple[Op | None, int]:
        """GS ( k pL pH cn fn ...: only QR (cn 49) is drawn."""
        size = self._length(3, 2)
        if size > MAX_DATA_BYTES:
            return self._oversized("GS ( k", 5, size)
        body = self._take(5, size)
        raw = self._take(0, min(5 + size, 64))
        if len(body) < 2 or body[0] != 49:
            return Setting("2D code (not QR)", raw), 5 + size
        fn, params = body[1], body[2:]
        if fn == 67 and params:
            self._qr_module = params[0]
        elif fn == 69 and params:
            self._qr_level = QR_ERROR_LEVELS.get(params[0], self._qr_level)
        elif fn == 80 and params:
            self._qr_data = params[1:]
        elif fn == 81:
            return QrCode(self._qr_data, self._qr_module, self._qr_level), 5 + size
        return Setting("QR setting", raw), 5 + size

    def _graphics_command(self, header: int, length_bytes: int) -> tuple[Op | None, int]:
        """GS ( L / GS 8 L: fn 112 stores a raster graphic, fn 50 prints it."""
        size = self._length(3, length_bytes)
        if size > MAX_DATA_BYTES:
            return self._oversized("GS ( L", header, size)
        body = self._take(header, size)
        length = header + size
        if len(body) >= 2 and body[1] == 50:
            stored, self._graphics = self._graphics, None
            if stored is None:
                return Setting("print graphics (none stored)", self._take(0, length)), length
            return stored, length
        if len(body) >= 10 and body[1] == 112 and body[2] == 48:
            bx, by = body[3], body[4]
            width, height = body[6] + body[7] * 256, body[8] + body[9] * 256
            data = body[10 : 10 + (width + 7) // 8 * height]
            if len(data) == (width + 7) // 8 * height:
                self._graphics = Raster(width, height, data, max(1, bx), max(1, by))
                return Setting("store graphics", self._take(0, min(length, 64))), length
        return Setting("graphics", self._take(0, min(length, 64))), length
