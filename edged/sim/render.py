"""What comes out of the printer: the ESC/POS line layout as rows, then text or a PNG.

`Layout` plays the printer's print head over parsed operations (edged.sim.escpos_ops): a line
buffer that wraps at the paper width, styles, alignment, feeds; raster images, QR codes (drawn
with the `qrcode` package, so they scan) and barcodes (bars from python-barcode) become image
rows. A cut ends a `Page`, which renders to text (for tests, logs and support) and to a PNG
(for people).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field

import barcode
import barcode.errors
import qrcode
import qrcode.exceptions
from PIL import Image, ImageDraw, ImageFont

from edged.sim import escpos_ops

FONTS = {0: (12, 24), 1: (9, 17)}  # font A, font B: cell width x height in dots
DEFAULT_LINE_SPACING = 30  # dots: 1/6 inch at 180 dpi
DEFAULT_WIDTH_DOTS = 512  # 80 mm paper at 180 dpi (TM-T88V): 42 columns of font A
TAB_COLUMNS = 8
PNG_MARGIN = 16  # white border around the paper, so QR codes keep a quiet zone
MONOSPACE_FONT = "DejaVuSansMono.ttf"

_QR_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
# Symbologies python-barcode can draw (its class names); others print as their text only.
_BARS = {
    "UPC-A": "upca",
    "EAN13": "ean13",
    "EAN8": "ean8",
    "CODE39": "code39",
    "ITF": "itf",
    "CODABAR": "codabar",
    "CODE128": "code128",
    "CODE128 auto": "code128",
    "GS1-128": "gs1_128",
}


@dataclass(frozen=True, slots=True)
class Glyph:
    char: str
    width: int  # dots
    height: int
    font: int
    bold: bool
    underline: int  # dots
    invert: bool


@dataclass(frozen=True, slots=True)
class InlineImage:
    image: Image.Image  # mode "1"

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


@dataclass(slots=True)
class TextRow:
    items: list[Glyph | InlineImage]
    align: int  # 0 left, 1 center, 2 right
    height: int

    @property
    def width(self) -> int:
        return sum(item.width for item in self.items)


@dataclass(frozen=True, slots=True)
class ImageRow:
    image: Image.Image  # mode "1"
    align: int
    label: str  # for the text form: "QR R-1-000001", "EAN13 4006381333931", "image 240x80"

    @property
    def height(self) -> int:
        return self.image.height


@dataclass(frozen=True, slots=True)
class Space:
    height: int  # dots of paper fed with nothing printed


Row = TextRow | ImageRow | Space


@dataclass(slots=True)
class Page:
    """One receipt: the rows between two cuts, on paper `width` dots wide."""

    width: int
    rows: list[Row] = field(default_factory=list)

    def text(self) -> str:
        """The receipt as lines of text, columns as printed (font A cells)."""
        cell = FONTS[0][0]
        columns = self.width // cell
        lines: list[str] = []
        for row in self.rows:
            if isinstance(row, Space):
                lines.extend([""] * round(row.height / DEFAULT_LINE_SPACING))
                continue
            if isinstance(row, ImageRow):
                content, used = f"[{row.label}]", len(row.label) + 2
            else:
                content = "".join(
                    item.char if isinstance(item, Glyph) else "[image]" for item in row.items
                )
                used = round(row.width / cell)
            lines.append((" " * _indent(row.align, columns - used) + content).rstrip())
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n"

    def png(self) -> bytes:
        """The receipt as a PNG image, one pixel per printer dot."""
        height = sum(row.height for row in self.rows)
        canvas = Image.new("L", (self.width + 2 * PNG_MARGIN, height + 2 * PNG_MARGIN), 255)
        y = PNG_MARGIN
        for row in self.rows:
            if isinstance(row, ImageRow):
                x = PNG_MARGIN + _indent(row.align, self.width - row.image.width)
                canvas.paste(row.image.convert("L"), (x, y))
            elif isinstance(row, TextRow):
                _draw_text_row(
                    canvas, row, PNG_MARGIN + _indent(row.align, self.width - row.width), y
                )
            y += row.height
        out = io.BytesIO()
        canvas.save(out, format="PNG")
        return out.getvalue()


def _indent(align: int, free: int) -> int:
    if free <= 0 or align == 0:
        return 0
    return free // 2 if align == 1 else free


class Layout:
    """The print head: applies operations, returns a Page at each cut."""

    def __init__(self, width_dots: int = DEFAULT_WIDTH_DOTS) -> None:
        self.width = width_dots
        self._page = Page(width_dots)
        self._line: list[Glyph | InlineImage] = []
        self._line_align = 0
        self._reset()

    def _reset(self) -> None:
        self.bold = False
        self.underline = 0
        self.font = 0
        self.invert = False
        self.width_mult = 1
        self.height_mult = 1
        self.align = 0
        self.line_spacing = DEFAULT_LINE_SPACING

    def apply(self, op: escpos_ops.Op) -> Page | None:
        if isinstance(op, escpos_ops.Text):
            for char in op.text:
                self._glyph(char)
        elif isinstance(op, escpos_ops.Tab):
            self._tab()
        elif isinstance(op, escpos_ops.LineFeed):
            self._end_line(always=True)
        elif isinstance(op, escpos_ops.Style):
            self._style(op.name, op.value)
        elif isinstance(op, escpos_ops.Init):
            self._line = []  # ESC @ clears the print buffer
            self._reset()
        elif isinstance(op, escpos_ops.Feed):
            self._end_line()
            self._page.rows.append(Space(op.lines * self.line_spacing))
        elif isinstance(op, escpos_ops.FeedDots):
            self._end_line()
            self._page.rows.append(Space(op.dots))
        elif isinstance(op, escpos_ops.Cut):
            return self._cut(op)
        elif isinstance(op, escpos_ops.Raster) and op.width and op.height:  # empty: prints nothing
            self._image(_raster_image(op), f"image {op.width}x{op.height}")
        elif isinstance(op, escpos_ops.QrCode):
            self._qr(op)
        elif isinstance(op, escpos_ops.Barcode):
            self._barcode(op)
        elif isinstance(op, escpos_ops.ColumnImage) and op.columns:
            self._place(InlineImage(_column_image(op)))
        return None

    def tear_off(self) -> Page | None:
        """What has come out since the last cut, torn off without one (the line buffer,
        never printed, is lost); None if nothing has."""
        self._line = []
        if not self._page.rows:
            return None
        page, self._page = self._page, Page(self.width)
        return page

    def _cut(self, op: escpos_ops.Cut) -> Page:
        self._end_line()
        if op.feed_dots:
            self._page.rows.append(Space(op.feed_dots))
        page, self._page = self._page, Page(self.width)
        return page

    def _style(self, name: str, value: int) -> None:
        if name == "bold":
            self.bold = bool(value & 1)
        elif name == "underline":
            self.underline = value % 48
        elif name == "font":
            self.font = 1 if value % 48 == 1 else 0
        elif name == "invert":
            self.invert = bool(value & 1)
        elif name == "align":
            self.align = value if value in (0, 1, 2) else self.align
        elif name == "line_spacing":
            self.line_spacing = DEFAULT_LINE_SPACING if value < 0 else value
        elif name == "print_mode":
            self.font = value & 1
            self.bold = bool(value & 0x08)
            self.height_mult = 2 if value & 0x10 else 1
            self.width_mult = 2 if value & 0x20 else 1
            self.underline = 1 if value & 0x80 else 0
        elif name == "size":
            self.width_mult = (value >> 4 & 7) + 1
            self.height_mult = (value & 7) + 1

    def _glyph(self, char: str) -> None:
        cell_w, cell_h = FONTS[self.font]
        glyph = Glyph(
            char if char.isprintable() else "?",  # control codes in barcode text, C1 bytes
            cell_w * self.width_mult,
            cell_h * self.height_mult,
            self.font,
            self.bold,
            self.underline,
            self.invert,
        )
        self._place(glyph)

    def _tab(self) -> None:
        stop = FONTS[0][0] * TAB_COLUMNS
        used = sum(item.width for item in self._line)
        target = min((used // stop + 1) * stop, self.width)
        while used < target:
            self._glyph(" ")
            now = sum(item.width for item in self._line)
            if now <= used:  # the line wrapped, or a space takes no room: the tab ends here
                return
            used = now

    def _place(self, item: Glyph | InlineImage) -> None:
        if not self._line:
            self._line_align = self.align  # ESC a counts at the start of a line
        if self._line and sum(i.width for i in self._line) + item.width > self.width:
            self._end_line()  # a full line prints by itself
            self._line_align = self.align
        self._line.append(item)

    def _end_line(self, *, always: bool = False) -> None:
        if not self._line and not always:
            return
        tallest = max((item.height for item in self._line), default=0)
        self._page.rows.append(
            TextRow(self._line, self._line_align, max(self.line_spacing, tallest))
        )
        self._line = []

    def _image(self, image: Image.Image, label: str) -> None:
        self._end_line()
        self._page.rows.append(ImageRow(image, self.align, label))

    def _note(self, text: str) -> None:
        """A line for support: what a real printer would silently not print."""
        for char in text:
            self._glyph(char)
        self._end_line()

    def _qr(self, op: escpos_ops.QrCode) -> None:
        code = qrcode.QRCode(error_correction=_QR_LEVELS[op.error_level], box_size=1, border=0)
        try:
            code.add_data(op.data)
            code.make(fit=True)
        except (qrcode.exceptions.DataOverflowError, ValueError) as exc:
            self._end_line()
            self._note(f"[QR not printable: {exc}]")
            return
        matrix = code.get_matrix()
        size = len(matrix)
        image = Image.new("1", (size, size), 1)
        image.putdata([0 if dark else 1 for line in matrix for dark in line])
        module = max(1, op.module)
        image = image.resize((size * module, size * module), Image.Resampling.NEAREST)
        self._image(image, f"QR {op.data.decode('latin-1')}")

    def _barcode(self, op: escpos_ops.Barcode) -> None:
        text = _barcode_text(op.symbology, op.data)
        self._end_line()
        pattern, shown = _bars(op.symbology, text)
        if op.hri in (1, 3):
            self._hri(shown)
        if pattern is None:
            self._note(f"[{op.symbology} {shown}]")
        else:
            module = max(1, op.module)
            image = Image.new("1", (len(pattern) * module, max(1, op.height)), 1)
            draw = ImageDraw.Draw(image)
            for i, bit in enumerate(pattern):
                if bit == "1":
                    draw.rectangle((i * module, 0, (i + 1) * module - 1, image.height - 1), fill=0)
            self._image(image, f"{op.symbology} {shown}")
        if op.hri in (2, 3):
            self._hri(shown)

    def _hri(self, text: str) -> None:
        """The human-readable line under (or over) a barcode, aligned like the bars."""
        saved = (self.width_mult, self.height_mult, self.bold)
        self.width_mult, self.height_mult, self.bold = 1, 1, False
        self._note(text)
        self.width_mult, self.height_mult, self.bold = saved


def _barcode_text(symbology: str, data: bytes) -> str:
    """The content of a barcode; for CODE128, without the `{A`/`{B`/`{C` code-set selectors."""
    text = data.decode("latin-1")
    if not symbology.startswith("CODE128"):
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "{" and i + 1 < len(text):
            if text[i + 1] == "{":
                out.append("{")
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _bars(symbology: str, text: str) -> tuple[str | None, str]:
    """The module pattern ("1" = bar) and the human-readable text, or None if not drawable."""
    name = _BARS.get(symbology)
    if name is None:
        return None, text
    options = {"add_checksum": False} if name == "code39" else {}
    try:
        code = barcode.get_barcode_class(name)(text, writer=None, **options)
        return str(code.build()[0]), str(code.get_fullcode())
    except (barcode.errors.BarcodeError, ValueError, IndexError):
        return None, f"{text} (invalid)"


def _raster_image(op: escpos_ops.Raster) -> Image.Image:
    row_bytes = (op.width + 7) // 8
    # PIL's mode "1" has 1 = white; ESC/POS has 1 = black.
    image = Image.frombytes("1", (row_bytes * 8, op.height), bytes(b ^ 0xFF for b in op.data))
    image = image.crop((0, 0, op.width, op.height))
    if op.scale_x > 1 or op.scale_y > 1:
        size = (op.width * op.scale_x, op.height * op.scale_y)
        image = image.resize(size, Image.Resampling.NEAREST)
    return image


def _column_image(op: escpos_ops.ColumnImage) -> Image.Image:
    """ESC * data: each column is dots/8 bytes, top to bottom, MSB first."""
    per_column = op.dots // 8
    image = Image.new("1", (op.columns, op.dots), 1)
    pixels = image.load()
    assert pixels is not None
    for x in range(op.columns):
        for k in range(per_column):
            byte = op.data[x * per_column + k]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    pixels[x, k * 8 + bit] = 0
    if op.double_width:
        image = image.resize((op.columns * 2, op.dots), Image.Resampling.NEAREST)
    return image


def _draw_text_row(canvas: Image.Image, row: TextRow, x: int, y: int) -> None:
    for item in row.items:
        top = y + row.height - item.height  # characters stand on the line's bottom
        if isinstance(item, InlineImage):
            canvas.paste(item.image.convert("L"), (x, top))
        else:
            canvas.paste(_glyph_image(item), (x, top))
        x += item.width


@functools.lru_cache(maxsize=4096)
def _glyph_image(glyph: Glyph) -> Image.Image:
    cell_w, cell_h = FONTS[glyph.font]
    cell = Image.new("L", (cell_w, cell_h), 255)
    draw = ImageDraw.Draw(cell)
    font = _font(cell_w)
    ascent, descent = font.getmetrics()
    x = (cell_w - font.getlength(glyph.char)) / 2
    y = (cell_h - ascent - descent) // 2
    draw.text((x, y), glyph.char, font=font, fill=0)
    if glyph.bold:
        draw.text((x + 1, y), glyph.char, font=font, fill=0)
    image = cell.resize((glyph.width, glyph.height), Image.Resampling.NEAREST)
    if glyph.underline:
        ImageDraw.Draw(image).rectangle(
            (0, glyph.height - glyph.underline, glyph.width - 1, glyph.height - 1), fill=0
        )
    if glyph.invert:
        image = image.point(lambda v: 255 - v)
    return image


@functools.lru_cache(maxsize=4)
def _font(cell_width: int) -> ImageFont.FreeTypeFont:
    """A monospace font whose advance fills a `cell_width` cell (DejaVu's is 0.6 em);
    Pillow's own font (each glyph centred in its cell) where DejaVu is not installed."""
    size = round(cell_width / 0.6)
    try:
        return ImageFont.truetype(MONOSPACE_FONT, size)
    except OSError:
        font = ImageFont.load_default(size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise TypeError("Pillow was built without FreeType; it cannot draw receipts")
    return font
