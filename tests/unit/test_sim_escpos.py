"""The simulator's ESC/POS parser and renderer, on python-escpos 3.1's own output."""

from __future__ import annotations

import io
from typing import Any

import barcode
import pytest
import qrcode
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edged.sim import escpos, escpos_ops
from edged.sim.escpos import EscPosParser
from edged.sim.escpos_ops import (
    Barcode,
    CodePage,
    ColumnImage,
    Cut,
    DrawerKick,
    Feed,
    Init,
    LineFeed,
    Op,
    QrCode,
    Raster,
    Setting,
    Style,
    Text,
    Unknown,
)
from edged.sim.render import ImageRow, Layout, Page, TextRow


@pytest.fixture
def dummy() -> Any:
    """python-escpos's byte-collecting printer (its import is slow, so only here)."""
    from escpos.printer import Dummy

    return Dummy(profile="TM-T88V")


def parse(data: bytes) -> list[Op]:
    return merge_text(EscPosParser().feed(data))


def merge_text(ops: list[Op]) -> list[Op]:
    """Adjacent Text ops joined: chunking may split a run of text."""
    out: list[Op] = []
    for op in ops:
        if isinstance(op, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + op.text)
        else:
            out.append(op)
    return out


def render(data: bytes, width: int = 512) -> list[Page]:
    layout = Layout(width)
    pages = [layout.apply(op) for op in EscPosParser().feed(data)]
    return [page for page in pages if page is not None]


# --- text and code pages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        (b"\x1bt\x00\x9b", "cp437", "¢"),
        (b"\x1bt\x02\x9b", "cp850", "ø"),
        (b"\x1bt\x13\xd5", "cp858", "€"),
        (b"\x1bt\x10\x80", "cp1252", "€"),
        (b"\x1bt\x28\xa4", "iso8859_15", "€"),
        (b"\x1bt\x0f\xa4", "iso8859_7", "€"),  # what python-escpos's magic encoder picks for €
    ],
)
def test_code_pages(data: bytes, encoding: str, text: str) -> None:
    assert parse(data) == [CodePage(data[2], encoding), Text(text)]


def test_unknown_code_page_keeps_the_current_one() -> None:
    assert parse(b"\x1bt\x13\x1bt\x63\xd5") == [
        CodePage(19, "cp858"),
        CodePage(99, None),
        Text("€"),
    ]


def test_python_escpos_text_with_euro(dummy: Any) -> None:
    dummy.text("€1 äöü\n")
    ops = parse(dummy.output)
    assert "".join(op.text for op in ops if isinstance(op, Text)) == "€1 äöü"
    assert ops[-1] == LineFeed()
    pages = render(dummy.output + b"\x1dV\x00")
    assert pages[0].text() == "€1 äöü\n"


@pytest.mark.parametrize("code_page", ["CP437", "CP850", "CP858", "CP1252", "ISO_8859-15"])
def test_python_escpos_code_pages(dummy: Any, code_page: str) -> None:
    dummy.charcode(code_page)
    dummy.text("Grüße\n")
    texts = [op.text for op in parse(dummy.output) if isinstance(op, Text)]
    assert "".join(texts) == "Grüße"


# --- the commands python-escpos emits ---------------------------------------------------------


def test_python_escpos_styles(dummy: Any) -> None:
    dummy.set(bold=True, align="center", double_height=True, double_width=True)
    dummy.set(font="b", underline=2, invert=True)
    dummy.set(custom_size=True, width=2, height=3)
    styles = [(op.name, op.value) for op in parse(dummy.output) if isinstance(op, Style)]
    assert ("print_mode", 0x30) in styles
    assert ("bold", 1) in styles
    assert ("align", 1) in styles
    assert ("underline", 2) in styles
    assert ("font", 1) in styles
    assert ("invert", 1) in styles
    assert styles[-1] == ("size", 0x12)


def test_python_escpos_qr(dummy: Any) -> None:
    dummy.qr("HELLO", ec=3, size=6, native=True)
    ops = parse(dummy.output)
    assert ops[-1] == QrCode(b"HELLO", module=6, error_level="H")
    assert all(isinstance(op, Setting) for op in ops[:-1])


def test_python_escpos_barcodes(dummy: Any) -> None:
    dummy.barcode("4006381333931", "EAN13")
    dummy.barcode("{BR-1-000001", "CODE128", function_type="B")
    bars = [op for op in parse(dummy.output) if isinstance(op, Barcode)]
    assert bars == [
        Barcode("EAN13", b"4006381333931", height=64, module=3, hri=2),
        Barcode("CODE128", b"{BR-1-000001", height=64, module=3, hri=2),
    ]


@pytest.mark.parametrize("impl", ["bitImageRaster", "graphics"])
def test_python_escpos_images(dummy: Any, impl: str) -> None:
    image = Image.new("1", (20, 10), 1)
    image.putpixel((0, 0), 0)
    image.putpixel((19, 9), 0)
    dummy.image(image, impl=impl)
    rasters = [op for op in parse(dummy.output) if isinstance(op, Raster)]
    assert len(rasters) == 1
    raster = rasters[0]
    assert raster.height == 10
    assert raster.width >= 20
    row = (raster.width + 7) // 8
    assert raster.data[0] & 0x80  # top-left dot black
    assert raster.data[9 * row + 19 // 8] & (0x80 >> (19 % 8))  # bottom-right dot black
    assert sum(bin(b).count("1") for b in raster.data) == 2


def test_python_escpos_column_image(dummy: Any) -> None:
    dummy.image(Image.new("1", (20, 10), 0), impl="bitImageColumn")
    columns = [op for op in parse(dummy.output) if isinstance(op, ColumnImage)]
    assert [(c.dots, c.columns, c.double_width) for c in columns] == [(24, 20, False)]


def test_python_escpos_cut_drawer_and_init(dummy: Any) -> None:
    dummy.hw("INIT")
    dummy.cashdraw(5)
    dummy.buzzer()
    dummy.cut()
    dummy.cut(mode="PART", feed=False)
    assert parse(dummy.output) == [
        Init(),
        DrawerKick(pin=5, on_ms=100, off_ms=100),
        Setting("beeper", b"\x1bB\x02\x04"),
        Feed(6),
        Cut(partial=False),
        Cut(partial=True, feed_dots=0),
    ]


def test_status_commands() -> None:
    assert parse(b"\x10\x04\x01\x1dr\x01\x1da\x0f\x10\x05\x02") == [
        escpos_ops.RealTime("DLE EOT", 1),
        escpos_ops.StatusRequest(1),
        escpos_ops.AsbRequest(15),
        escpos_ops.RealTime("DLE ENQ", 2),
    ]


# --- what a printer does not know ------------------------------------------------------------


def test_unknown_commands_are_recorded_and_their_bytes_print() -> None:
    assert parse(b"\x1b\xffAB\x07C") == [
        Unknown(b"\x1b\xff"),
        Text("AB"),
        Unknown(b"\x07"),
        Text("C"),
    ]


def test_a_command_cut_between_feeds_waits_for_its_end() -> None:
    parser = EscPosParser()
    assert parser.feed(b"\x1dv0\x00\x01\x00\x02") == []
    assert parser.feed(b"\x00\x80") == []
    assert parser.feed(b"\x01X") == [Raster(8, 2, b"\x80\x01"), Text("X")]


def test_an_oversized_command_is_skipped_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escpos, "MAX_DATA_BYTES", 16)
    parser = EscPosParser()
    ops = parser.feed(b"\x1dv0\x00\x05\x00\x05\x00" + b"\xff" * 10)  # 25 data bytes announced
    assert len(ops) == 1
    assert isinstance(ops[0], Unknown)
    assert b"25 data bytes skipped" in ops[0].raw
    assert parser.feed(b"\xff" * 15 + b"after") == [Text("after")]


_HEADS = [
    b"\x1b",
    b"\x1d",
    b"\x10",
    b"\x1c",
    b"\x1d(k",
    b"\x1d(L",
    b"\x1dv0",
    b"\x1dk",
    b"\x1b*",
    b"\x1b&",
]


@given(st.lists(st.sampled_from(_HEADS) | st.binary(max_size=12), max_size=12))
def test_parser_never_raises(parts: list[bytes]) -> None:
    EscPosParser().feed(b"".join(parts))


@given(st.binary(max_size=80), st.lists(st.integers(0, 80), max_size=5))
def test_parser_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole = merge_text(EscPosParser().feed(data))
    parser = EscPosParser()
    ops: list[Op] = []
    start = 0
    for cut in sorted(cuts):
        ops += parser.feed(data[start:cut])
        start = max(start, cut)
    ops += parser.feed(data[start:])
    assert merge_text(ops) == whole


# --- rendering -------------------------------------------------------------------------------


def test_layout_aligns_sizes_and_wraps() -> None:
    data = (
        b"\x1ba\x01Centered\n"
        b"\x1ba\x02Right\n"
        b"\x1ba\x00\x1d!\x11BIG\n\x1d!\x00" + b"x" * 45 + b"\n\x1bd\x02\x1dVA\x00"
    )
    (page,) = render(data)
    assert page.text() == (
        " " * 17 + "Centered\n" + " " * 37 + "Right\nBIG\n" + "x" * 42 + "\nxxx\n"
    )
    assert [row.height for row in page.rows[:3]] == [30, 30, 48]


def test_layout_keeps_styles_across_cuts_and_init_resets_them() -> None:
    (first, second, third) = render(b"\x1ba\x01A\n\x1dV\x00B\n\x1dV\x00\x1b@C\n\x1dV\x00")
    assert first.text() == " " * 20 + "A\n"
    assert second.text() == " " * 20 + "B\n"
    assert third.text() == "C\n"


def test_render_qr_matches_the_qrcode_package(dummy: Any) -> None:
    dummy.qr("R-1-000001", size=4, native=True)
    (page,) = render(dummy.output + b"\x1dV\x00")
    (row,) = [r for r in page.rows if isinstance(r, ImageRow)]
    assert row.label == "QR R-1-000001"
    code = qrcode.QRCode(box_size=1, border=0, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(b"R-1-000001")
    code.make(fit=True)
    matrix = code.get_matrix()
    assert row.image.size == (len(matrix) * 4, len(matrix) * 4)
    for y, line in enumerate(matrix):
        for x, dark in enumerate(line):
            assert (row.image.getpixel((x * 4 + 1, y * 4 + 1)) == 0) == dark
    assert "[QR R-1-000001]" in page.text()


def test_render_barcode_bars_and_hri(dummy: Any) -> None:
    dummy.barcode("4006381333931", "EAN13")
    (page,) = render(dummy.output + b"\x1dV\x00")
    image_rows = [r for r in page.rows if isinstance(r, ImageRow)]
    assert [r.label for r in image_rows] == ["EAN13 4006381333931"]
    pattern = barcode.get_barcode_class("ean13")("4006381333931", writer=None).build()[0]
    image = image_rows[0].image
    assert image.size == (len(pattern) * 3, 64)
    assert [image.getpixel((i * 3, 0)) == 0 for i in range(len(pattern))] == [
        bit == "1" for bit in pattern
    ]
    text_rows = [r for r in page.rows if isinstance(r, TextRow) and r.items]
    assert page.text().splitlines()[-1].strip() == "4006381333931"
    assert text_rows[-1].align == 1


def test_render_code128_without_code_set_selectors(dummy: Any) -> None:
    dummy.barcode("{BR-1-000001", "CODE128", function_type="B")
    (page,) = render(dummy.output + b"\x1dV\x00")
    assert "[CODE128 R-1-000001]" in page.text()


def test_render_raster_image_and_png() -> None:
    data = b"Logo\n\x1dv0\x00\x01\x00\x02\x00\x81\x18\x1dV\x00"
    (page,) = render(data)
    row = next(r for r in page.rows if isinstance(r, ImageRow))
    assert [row.image.getpixel((x, 0)) for x in range(8)] == [0, 255, 255, 255, 255, 255, 255, 0]
    png = Image.open(io.BytesIO(page.png()))
    assert png.format == "PNG"
    assert png.width == 512 + 32
    assert "[image 8x2]" in page.text()
    # The text row drew ink; the raster's first dot is black at its place on the paper.
    assert png.convert("L").getpixel((16, 16 + 30)) == 0


def test_render_invalid_barcode_says_so() -> None:
    (page,) = render(b"\x1dH\x02\x1dkC\x03abc\x1dV\x00")
    assert "abc (invalid)" in page.text()


def _raster(d: st.DrawFn) -> bytes:
    x, y, m = d(st.integers(0, 3)), d(st.integers(0, 3)), d(st.integers(0, 3))
    return bytes([0x1D, 0x76, 0x30, m, x, 0, y, 0]) + d(st.binary(min_size=x * y, max_size=x * y))


def _graphics(d: st.DrawFn) -> bytes:
    w, h, bx, by = (
        d(st.integers(0, 20)),
        d(st.integers(0, 4)),
        d(st.integers(0, 3)),
        d(st.integers(0, 3)),
    )
    data = d(st.binary(min_size=(w + 7) // 8 * h, max_size=(w + 7) // 8 * h))
    body = bytes([48, 112, 48, bx, by, 49, w, 0, h, 0]) + data
    store = b"\x1d(L" + len(body).to_bytes(2, "little") + body
    return store + b"\x1d(L\x02\x0002"


def _column(d: st.DrawFn) -> bytes:
    m, n = d(st.sampled_from([0, 1, 32, 33, 7])), d(st.integers(0, 4))
    size = n * (3 if m >= 32 else 1)
    return bytes([0x1B, 0x2A, m, n, 0]) + d(st.binary(min_size=size, max_size=size))


def _barcode(d: st.DrawFn) -> bytes:
    m = d(st.sampled_from([*range(7), *range(65, 80), 99]))
    data = d(st.binary(max_size=20))
    if m < 65:
        return bytes([0x1D, 0x6B, m]) + data.replace(b"\x00", b"") + b"\x00"
    return bytes([0x1D, 0x6B, m, len(data)]) + data


def _qr(d: st.DrawFn) -> bytes:
    data = d(st.binary(max_size=40) | st.just(b"x" * 3000))
    module, level = d(st.integers(0, 20)), d(st.integers(0, 255))
    store = bytes([49, 80, 48]) + data
    return (
        b"\x1d(k\x03\x001C"
        + bytes([module])
        + b"\x1d(k\x03\x001E"
        + bytes([level])
        + b"\x1d(k"
        + len(store).to_bytes(2, "little")
        + store
        + b"\x1d(k\x03\x001Q0"
    )


def _style(d: st.DrawFn) -> bytes:
    head = d(
        st.sampled_from(
            [b"\x1b!", b"\x1d!", b"\x1ba", b"\x1b-", b"\x1bM", b"\x1b3", b"\x1bd", b"\x1bJ"]
        )
    )
    return head + bytes([d(st.integers(0, 255))])


@st.composite
def receipts(d: st.DrawFn) -> bytes:
    parts = st.sampled_from([_raster, _graphics, _column, _barcode, _qr, _style])
    out = b""
    for _ in range(d(st.integers(0, 6))):
        out += d(parts)(d) + d(
            st.sampled_from([b"", b"text", b"\n", b"\t", "Grüße €".encode("cp858")])
        )
    return out + d(st.sampled_from([b"", b"\x1dV\x00"]))


@settings(max_examples=200, deadline=None)
@given(receipts(), st.binary(max_size=8))
def test_layout_and_rendering_never_raise(data: bytes, noise: bytes) -> None:
    layout = Layout(384)
    for op in EscPosParser().feed(data + noise + b"\x1dV\x00"):
        page = layout.apply(op)
        if page is not None:
            page.text()
            page.png()
