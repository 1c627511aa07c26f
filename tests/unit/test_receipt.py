"""Receipt builder: golden bytes, layout per profile, and bytes that always match the text form."""

from __future__ import annotations

import copy as copying
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.devices.printer.layout import ReceiptLayout, currency_exponent, format_amount
from edged.devices.printer.receipt import DocumentError, build_receipt, receipt_text

ESC, GS = 0x1B, 0x1D
HASH = "9f3937030fda" + "ab" * 26
# What every receipt starts with: ESC t 19 (CP858), then python-escpos' set_with_default().
PROLOGUE = (
    b"\x1bt\x13"
    + b"\x1b!\x00" * 3
    + b"\x1b{\x00\x1db\x00\x1bE\x00\x1b-\x00\x1bM\x00\x1ba\x00\x1dB\x00"
)
NORMAL = b"\x1b!\x00" * 3  # python-escpos' set(normal_textsize=True)


def sale_doc(**sale_changes: Any) -> dict[str, Any]:
    sale: dict[str, Any] = {
        "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "currency": "EUR",
        "total": 250,
        "lines": [{"sku": "TEA", "name": "Tee", "qty": 1, "amount": 250}],
        "payments": [{"method": "cash", "amount": 250}],
    }
    sale.update(sale_changes)
    return {
        "kind": "sale",
        "store_id": "S1",
        "terminal_id": "T1",
        "seq": 1,
        "receipt_no": "S1-T1-000001",
        "created_at": "2024-05-01T10:15:30.123Z",
        "hash": HASH,
        "sale": sale,
    }


def decode(data: bytes, codec: str = "cp858") -> list[str]:
    """Our own reading of the bytes: printed lines, codes as [QR ...], [CODE128 ...], [IMAGE].

    Knows exactly the commands the builder may send; any other control byte fails the test,
    so a control character smuggled in through a document would be caught here.
    """
    lines: list[str] = []
    current = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x0A:
            lines.append(current.decode(codec))
            current.clear()
            i += 1
        elif byte == ESC:
            assert data[i + 1] in b"t!{E-Mad", f"ESC {data[i + 1]:#x} at {i}"
            i += 3
        elif byte == GS:
            cmd = data[i + 1]
            if cmd in b"bBhwfH":
                i += 3
            elif cmd == ord("V"):
                i += 4 if data[i + 2] in (65, 66) else 3
            elif cmd == ord("("):
                assert data[i + 2] == ord("k")
                size = data[i + 3] | data[i + 4] << 8
                body = data[i + 5 : i + 5 + size]
                if body[:3] == b"1P0":
                    lines.append(f"[QR {body[3:].decode()}]")
                i += 5 + size
            elif cmd == ord("k"):
                assert data[i + 2] == 73, "CODE128 (function B) only"
                size = data[i + 3]
                payload = data[i + 4 : i + 4 + size]
                assert payload.startswith(b"{B")
                lines.append(f"[CODE128 {payload[2:].replace(b'{{', b'{').decode('ascii')}]")
                i += 4 + size
            elif cmd == ord("v"):
                x = data[i + 4] | data[i + 5] << 8
                y = data[i + 6] | data[i + 7] << 8
                lines.append("[IMAGE]")
                i += 8 + x * y
            else:
                raise AssertionError(f"GS {cmd:#x} at {i}")
        else:
            assert byte >= 0x20 and byte != 0x7F, f"control byte {byte:#x} at {i}"
            current.append(byte)
            i += 1
    assert not current, "the last line was not ended"
    return lines


def as_printed(text_lines: list[str], profile: str) -> list[str]:
    """The text form with a QR code shown as the image a profile without native QR gets."""
    if profile != "NT-5890K":
        return text_lines
    return ["[IMAGE]" if line.strip().startswith("[QR ") else line for line in text_lines]


def printed(lines: list[str]) -> list[str]:
    """Lines as a person sees them: alignment padding and blank lines do not count."""
    return [line.strip() for line in lines if line.strip()]


# --- golden ---------------------------------------------------------------------------------


def test_small_receipt_golden_bytes() -> None:
    layout = ReceiptLayout(header=("Café €",), footer=("Danke",))
    expected = (
        PROLOGUE
        + b"\x1ba\x01Caf\x82 \xd5\n"  # centered; é is 0x82 and € is 0xD5 in CP858
        + b"\x1ba\x00Store S1" + b" " * 23 + b"Terminal T1\n"
        + b"2024-05-01 10:15:30 UTC\n"
        + b"Receipt" + b" " * 23 + b"S1-T1-000001\n"
        + b"-" * 42 + b"\n"
        + b"Tee" + b" " * 35 + b"2.50\n"
        + b"-" * 42 + b"\n"
        + NORMAL[:6] + b"\x1b!\x10\x1bE\x01TOTAL" + b" " * 31 + b"\xd5 2.50\n"
        + NORMAL + b"\x1bE\x00cash" + b" " * 34 + b"2.50\n"
        + b"-" * 42 + b"\n"
        + b"hash 9f3937030fda\n"
        + b"\x1ba\x01"
        + b"\x1d(k\x04\x001A2\x00"  # model 2
        + b"\x1d(k\x03\x001C\x05"  # module 5 dots
        + b"\x1d(k\x03\x001E1"  # error correction M
        + b"\x1d(k\x0f\x001P0S1-T1-000001"  # store the data
        + b"\x1d(k\x03\x001Q0"  # print it
        + NORMAL + b"\x1bE\x00\x1ba\x01Danke\n"
        + b"\x1bd\x06\x1dV\x00"  # python-escpos' cut: feed 6 lines, full cut
    )  # fmt: skip
    assert build_receipt(sale_doc(), layout, copy=False) == expected


def test_small_receipt_golden_text() -> None:
    layout = ReceiptLayout(header=("Café €",), footer=("Danke",))
    assert receipt_text(sale_doc(), layout, copy=False) == (
        "                  Café €\n"
        "Store S1                       Terminal T1\n"
        "2024-05-01 10:15:30 UTC\n"
        "Receipt                       S1-T1-000001\n"
        "------------------------------------------\n"
        "Tee                                   2.50\n"
        "------------------------------------------\n"
        "TOTAL                               € 2.50\n"
        "cash                                  2.50\n"
        "------------------------------------------\n"
        "hash 9f3937030fda\n"
        "            [QR S1-T1-000001]\n"
        "                  Danke\n"
    )


def test_same_document_gives_the_same_bytes_whatever_came_before() -> None:
    layout = ReceiptLayout()
    first = build_receipt(sale_doc(), layout, copy=False)
    other = sale_doc(lines=[{"sku": "Ω", "name": "Ωmega ß ä", "qty": 1, "amount": 250}])
    build_receipt(other, layout, copy=False)
    assert build_receipt(sale_doc(), layout, copy=False) == first
    assert first.count(b"\x1bt") == 1  # one code page, chosen once


@pytest.mark.parametrize(
    ("profile", "table"),
    [("default", 19), ("TM-T88V", 19), ("TM-T20II", 19), ("TSP600", 4), ("TH230", 6)],
)
def test_cp858_is_selected_with_the_profiles_table_number(profile: str, table: int) -> None:
    data = build_receipt(sale_doc(), ReceiptLayout(profile=profile), copy=False)
    assert data.startswith(bytes([ESC, ord("t"), table]))
    assert b"\xd5 2.50\n" in data


# --- columns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "columns", "expected"),
    [
        ("default", None, 42),
        ("TM-T88V", None, 42),
        ("TM-T20II", None, 48),
        ("NT-5890K", None, 32),
        ("OCD-300", None, 20),
        ("TM-T20II", 40, 40),
    ],
)
def test_column_width_comes_from_the_profile_unless_set(
    profile: str, columns: int | None, expected: int
) -> None:
    text = receipt_text(sale_doc(), ReceiptLayout(profile=profile, columns=columns), copy=False)
    lines = text.splitlines()
    assert "-" * expected in lines
    assert max(len(line) for line in lines) == expected
    assert lines[0].startswith("Store S1") and lines[0].endswith("Terminal T1")
    assert len(lines[0]) == expected


def test_bytes_and_text_show_the_same_lines() -> None:
    doc = sale_doc(
        total=1250,
        lines=[
            {"sku": "A", "name": "Brötchen Kürbiskern extra knusprig aus dem Steinofen",
             "qty": 3, "unit_price": 250, "amount": 750, "tax": 49, "tax_rate": "7"},
            {"sku": "B", "qty": "0.350", "unit_price": 1000, "amount": 350, "discount": 50},
            {"sku": "C", "qty": 1, "amount": 150},
        ],
        payments=[{"method": "card", "amount": 1250, "card": {"masked_pan": "411111******1111"}}],
    )  # fmt: skip
    for profile in ("default", "TM-T20II", "NT-5890K"):
        layout = ReceiptLayout(profile=profile, header=("Hello",), footer=("Bye",))
        for copy in (False, True):
            from_bytes = decode(build_receipt(doc, layout, copy=copy))
            from_text = receipt_text(doc, layout, copy=copy).splitlines()
            assert printed(from_bytes) == printed(as_printed(from_text, profile))


# --- copy -----------------------------------------------------------------------------------


def test_copy_is_marked_at_top_and_bottom_in_double_size() -> None:
    layout = ReceiptLayout(header=("Shop",))
    lines = [line.strip() for line in receipt_text(sale_doc(), layout, copy=True).splitlines()]
    assert lines[0] == "*** COPY ***"
    assert lines[-1] == "*** COPY ***"
    assert lines[1] == "Shop"
    data = build_receipt(sale_doc(), layout, copy=True)
    marker = b"\x1b!\x30\x1bE\x01\x1ba\x01*** COPY ***\n"  # double width and height, bold
    assert data.count(marker) == 2
    assert data.index(marker) < data.index(b"Shop")
    assert data.rindex(marker) > data.index(b"hash ")


def test_original_has_no_copy_marker() -> None:
    assert b"COPY" not in build_receipt(sale_doc(), ReceiptLayout(), copy=False)
    assert "COPY" not in receipt_text(sale_doc(), ReceiptLayout(), copy=False)


def test_copy_marker_is_localized_and_fits_narrow_paper() -> None:
    layout = ReceiptLayout(columns=16, labels={"copy": "KOPIE"})
    text = receipt_text(sale_doc(), layout, copy=True)
    assert text.splitlines()[0].strip() == "*** KOPIE ***"
    data = build_receipt(sale_doc(), layout, copy=True)
    # 13 characters do not fit 16 columns in double width: double height only
    assert b"\x1b!\x10\x1bE\x01\x1ba\x01*** KOPIE ***\n" in data


# --- lines ----------------------------------------------------------------------------------


def test_long_names_wrap_under_the_width_with_the_amount_on_the_first_line() -> None:
    name = "Vollkornbrot mit Sonnenblumenkernen und Leinsamen, geschnitten"
    doc = sale_doc(lines=[{"sku": "X", "name": name, "qty": 1, "amount": 250}])
    lines = receipt_text(doc, ReceiptLayout(columns=32), copy=False).splitlines()
    start = lines.index("-" * 32) + 1
    assert lines[start : start + 3] == [
        "Vollkornbrot mit" + " " * 12 + "2.50",
        "Sonnenblumenkernen und..",  # max_name_lines=2 cuts the rest
        "-" * 32,
    ]
    assert all(len(line) <= 32 for line in lines)


def test_max_name_lines_lets_long_names_through() -> None:
    name = "Vollkornbrot mit Sonnenblumenkernen und Leinsamen, geschnitten"
    doc = sale_doc(lines=[{"sku": "X", "name": name, "qty": 1, "amount": 250}])
    text = receipt_text(doc, ReceiptLayout(columns=32, max_name_lines=5), copy=False)
    words = " ".join(text.split())
    assert name in words.replace(" 2.50", "")


def test_amounts_are_never_cut() -> None:
    big = 2**53 - 1
    doc = sale_doc(
        total=big,
        lines=[{"sku": "X", "name": "Gold bar " * 4, "qty": 1, "amount": big}],
        payments=[{"method": "transfer", "amount": big}],
    )
    text = receipt_text(doc, ReceiptLayout(columns=16), copy=False)
    assert text.count("90071992547409.91") == 3
    assert "€ 90071992547409.91" in text
    assert b"90071992547409.91" in build_receipt(doc, ReceiptLayout(columns=16), copy=False)


def test_weighed_and_counted_quantities() -> None:
    doc = sale_doc(
        total=1154,
        lines=[
            {"sku": "BANANA", "qty": "0.350", "unit_price": 1290, "amount": 452},
            {"sku": "EGG", "name": "Egg", "qty": 6, "unit_price": 117, "amount": 702},
            {"sku": "ONE", "qty": "1.000", "amount": 0},
        ],
    )
    lines = receipt_text(doc, ReceiptLayout(), copy=False).splitlines()
    assert lines[lines.index("BANANA" + " " * 32 + "4.52") + 1] == "  0.350 x 12.90"
    assert lines[lines.index("Egg" + " " * 35 + "7.02") + 1] == "  6 x 1.17"
    assert lines[lines.index("ONE" + " " * 35 + "0.00") + 1] == "  1.000 x"  # weighed: always


def test_qty_one_has_no_quantity_line() -> None:
    lines = receipt_text(sale_doc(), ReceiptLayout(), copy=False).splitlines()
    assert lines[lines.index("Tee" + " " * 35 + "2.50") + 1] == "-" * 42


def test_discounts_and_tax_summary() -> None:
    doc = sale_doc(
        total=1000,
        lines=[
            {"sku": "A", "qty": 1, "amount": 500, "discount": 100, "tax": 80, "tax_rate": "19"},
            {"sku": "B", "qty": 1, "amount": 300, "tax": 20, "tax_rate": "7%"},
            {"sku": "C", "qty": 1, "amount": 200, "tax": 32, "tax_rate": "19"},
        ],
    )
    lines = receipt_text(doc, ReceiptLayout(), copy=False).splitlines()
    assert lines[lines.index("A" + " " * 37 + "5.00") + 1] == "  Discount" + " " * 27 + "-1.00"
    assert "Tax 19%" + " " * 31 + "1.12" in lines
    assert "Tax 7%" + " " * 32 + "0.20" in lines


def test_no_tax_summary_without_tax_on_lines() -> None:
    assert "Tax" not in receipt_text(sale_doc(), ReceiptLayout(), copy=False)


def test_card_payment_prints_only_the_allowed_fields() -> None:
    card = {
        "masked_pan": "411111******1111",
        "card_name": "VISA",
        "auth_code": "A1B2C3",
        "trace_number": 4711,
        "terminal_id": "52500038",
        "result_code": 0,
    }
    doc = sale_doc(payments=[{"method": "card", "amount": 250, "card": card}])
    lines = receipt_text(doc, ReceiptLayout(), copy=False).splitlines()
    at = lines.index("card" + " " * 34 + "2.50")
    assert lines[at + 1 : at + 4] == [
        "  VISA  411111******1111",
        "  Auth A1B2C3  Trace 4711",
        "  TID 52500038",
    ]
    assert "result" not in "\n".join(lines).lower()


def test_jpy_has_no_decimals_and_its_code_as_symbol() -> None:
    doc = sale_doc(
        currency="JPY",
        total=1250,
        lines=[{"sku": "X", "qty": 1, "amount": 1250}],
        payments=[{"method": "cash", "amount": 1250}],
    )
    lines = receipt_text(doc, ReceiptLayout(), copy=False).splitlines()
    assert "X" + " " * 37 + "1250" in lines
    assert "TOTAL" + " " * 29 + "JPY 1250" in lines


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "EUR", "12.50"),
        (5, "USD", "0.05"),
        (-5, "GBP", "-0.05"),
        (0, "CHF", "0.00"),
        (1250, "JPY", "1250"),
        (-7, "KRW", "-7"),
        (1250, "KWD", "1.250"),
        (5, "BHD", "0.005"),
        (12345, "CLF", "1.2345"),
        (100, "XYZ", "1.00"),
    ],
)
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_decimal_comma_and_symbol_after() -> None:
    layout = ReceiptLayout(decimal_separator=",", currency_format="{amount} {symbol}")
    assert "TOTAL" + " " * 31 + "2,50 €" in receipt_text(sale_doc(), layout, copy=False)
    assert currency_exponent("EUR") == 2


def test_dates_say_utc_and_other_forms_print_as_given() -> None:
    doc = sale_doc()
    doc["created_at"] = "2024-05-01T10:15:30+02:00"
    assert "2024-05-01T10:15:30+02:00" in receipt_text(doc, ReceiptLayout(), copy=False)
    doc["created_at"] = "2024-05-01T10:15:30Z"
    assert "2024-05-01 10:15:30 UTC" in receipt_text(doc, ReceiptLayout(), copy=False)


def test_hash_can_be_left_off() -> None:
    assert "hash" not in receipt_text(sale_doc(), ReceiptLayout(show_hash=False), copy=False)


# --- characters -----------------------------------------------------------------------------


def test_characters_the_code_page_lacks_print_as_question_marks() -> None:
    doc = sale_doc(lines=[{"sku": "X", "name": "漢字 ☃ Ωμέγα", "qty": 1, "amount": 250}])
    text = receipt_text(doc, ReceiptLayout(), copy=False)
    assert "?? ? ?????" in text
    assert b"?? ? ?????" in build_receipt(doc, ReceiptLayout(), copy=False)


def test_control_characters_cannot_reach_the_printer() -> None:
    name = "Evil\x1b@\x1dV\x00\x07\r\nName\u200b\u2028!"
    doc = sale_doc(lines=[{"sku": "X\x1bp\x00", "name": name, "qty": 1, "amount": 250}])
    data = build_receipt(doc, ReceiptLayout(), copy=False)
    assert b"Evil @ V    Name !" in data
    text = receipt_text(doc, ReceiptLayout(), copy=False)
    assert printed(decode(data)) == printed(text.splitlines())


def test_decomposed_accents_are_composed_first() -> None:
    doc = sale_doc(lines=[{"sku": "X", "name": "Cafe\u0301", "qty": 1, "amount": 250}])
    assert b"Caf\x82 " in build_receipt(doc, ReceiptLayout(), copy=False)


# --- codes and cut --------------------------------------------------------------------------


def test_barcode_is_code128_of_the_receipt_number() -> None:
    data = build_receipt(sale_doc(), ReceiptLayout(code="barcode"), copy=False)
    assert b"\x1dkI\x0e{BS1-T1-000001" in data  # GS k 73 n, code set B
    assert "[CODE128 S1-T1-000001]" in decode(data)
    text = receipt_text(sale_doc(), ReceiptLayout(code="barcode"), copy=False)
    assert "[CODE128 S1-T1-000001]" in text


def test_a_barcode_too_wide_for_the_paper_becomes_a_qr_code() -> None:
    doc = sale_doc()
    doc["receipt_no"] = "STORE_BERLIN_MITTE-TERMINAL_07-000001"
    data = build_receipt(doc, ReceiptLayout(code="barcode"), copy=False)
    assert b"\x1dk" not in data
    assert f"[QR {doc['receipt_no']}]" in decode(data)


def test_profile_without_qr_prints_the_code_as_an_image_or_as_text() -> None:
    image = build_receipt(sale_doc(), ReceiptLayout(profile="NT-5890K"), copy=False)
    assert b"\x1dv0" in image and b"\x1d(k" not in image
    plain = ReceiptLayout(profile="OCD-300")  # a customer display: no codes, no images
    assert "S1-T1-000001" in receipt_text(sale_doc(), plain, copy=False).splitlines()[-1]


def test_code_none_prints_no_code() -> None:
    data = build_receipt(sale_doc(), ReceiptLayout(code="none"), copy=False)
    assert b"\x1d(k" not in data and b"\x1dk" not in data


@pytest.mark.parametrize(
    ("cut", "tail"),
    [("full", b"\x1bd\x06\x1dV\x00"), ("partial", b"\x1bd\x06\x1dV\x01"), ("none", b"\n" * 6)],
)
def test_cut_modes(cut: Any, tail: bytes) -> None:
    data = build_receipt(sale_doc(), ReceiptLayout(cut=cut, code="none"), copy=False)
    assert data.endswith(b"hash 9f3937030fda\n" + tail)


def test_feed_lines_before_the_cut() -> None:
    layout = ReceiptLayout(feed_lines=3, code="none")
    data = build_receipt(sale_doc(), layout, copy=False)
    assert data.endswith(b"hash 9f3937030fda\n\n\n\n\x1bd\x06\x1dV\x00")
    assert receipt_text(sale_doc(), layout, copy=False).endswith("hash 9f3937030fda\n\n\n\n")


# --- text slips -----------------------------------------------------------------------------


def test_text_slip_has_header_title_lines_and_code_but_no_footer() -> None:
    layout = ReceiptLayout(columns=32, header=("Shop",), footer=("Thanks",))
    doc = {
        "kind": "text",
        "title": "X report",
        "lines": ["cash  12.00", "", "x" * 40],
        "code": "XR-7",
    }
    lines = receipt_text(doc, layout, copy=False).splitlines()
    assert [line.strip() for line in lines] == [
        *("Shop", "X report", "-" * 32, "cash  12.00", ""),
        *("x" * 32, "x" * 8, "[QR XR-7]"),
    ]
    data = build_receipt(doc, layout, copy=False)
    assert b"\x1ba\x01Shop\n" + NORMAL[:6] + b"\x1b!\x10\x1bE\x01X report\n" in data
    assert b"Thanks" not in data


def test_text_slip_code_is_a_plain_line_when_codes_are_off() -> None:
    doc: dict[str, Any] = {"kind": "text", "title": None, "lines": [], "code": "XR-7"}
    text = receipt_text(doc, ReceiptLayout(code="none"), copy=True)
    assert [line.strip() for line in text.splitlines()] == ["*** COPY ***", "XR-7", "*** COPY ***"]


# --- errors ---------------------------------------------------------------------------------


def error(document: Any, layout: ReceiptLayout | None = None) -> str:
    with pytest.raises(DocumentError) as info:
        build_receipt(document, layout or ReceiptLayout(), copy=False)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_missing_fields_are_named_by_their_path() -> None:
    doc = sale_doc(lines=[{"sku": "A", "qty": 1, "amount": 1}] * 2 + [{"sku": "C", "qty": 1}])
    assert error(doc) == "document.sale.lines[2].amount: missing"
    doc = sale_doc()
    del doc["receipt_no"]
    assert error(doc) == "document.receipt_no: missing"
    doc = sale_doc(payments=[{"amount": 250}])
    assert error(doc) == "document.sale.payments[0].method: missing"
    assert error({"kind": "text", "title": "x"}) == "document.lines: missing"
    assert error({"title": "x"}) == "document.kind: missing"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total": 2.5}, "document.sale.total: must be an integer number of minor units, got 2.5"),
        ({"total": True}, "document.sale.total: must be an integer number of minor units, got a"),
        ({"total": 2**60}, "document.sale.total: 1152921504606846976 is beyond ±2^53-1"),
        ({"currency": "eur"}, "document.sale.currency: must be an ISO 4217 code, got 'eur'"),
        ({"lines": {}}, "document.sale.lines: must be an array, got an object"),
        ({"lines": [{"sku": "A", "qty": 0.5, "amount": 1}]}, "document.sale.lines[0].qty: must"),
        (
            {"lines": [{"sku": "A", "qty": 1, "name": ["x"], "amount": 1}]},
            "document.sale.lines[0].name:",
        ),
        (
            {"payments": [{"method": "card", "amount": 250, "card": "visa"}]},
            "document.sale.payments[0].card:",
        ),
    ],
)
def test_wrong_types_are_named(change: dict[str, Any], message: str) -> None:
    assert error(sale_doc(**change)).startswith(message)


def test_bad_header_fields() -> None:
    doc = sale_doc()
    doc["hash"] = "xyz"
    assert error(doc) == "document.hash: must be 12 to 128 hexadecimal digits"
    doc = sale_doc()
    doc["receipt_no"] = "A\nB"
    assert error(doc) == "document.receipt_no: must not contain control characters or line breaks"
    assert error({"kind": "refund"}) == 'document.kind: must be "sale" or "text", got \'refund\''
    assert error([1]) == "document: must be an object, got an array"


# --- layout validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"profile": "TM-X"}, "profile: unknown printer profile 'TM-X'"),
        ({"profile": "simple"}, "codepage: profile 'simple' has no code page 'CP858'; it has"),
        ({"codepage": "CP437"}, "currency_symbols.EUR: '€' cannot be printed with code page CP437"),
        ({"profile": "NT-80-V-UL"}, "columns: profile 'NT-80-V-UL' says font A has 12 columns"),
        ({"columns": 8}, "columns: must be 16 to 80, got 8"),
        ({"currency_format": "{symbol}"}, "currency_format: must contain {amount}"),
        ({"labels": {"totl": "SUMME"}}, "labels.totl: unknown label"),
        ({"currency_symbols": {"USD": ""}}, "currency_symbols.USD: must not be empty"),
        ({"feed_lines": 99}, "feed_lines: must be 0 to 20, got 99"),
    ],
)
def test_layouts_that_cannot_print_are_refused(settings_: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        ReceiptLayout(**settings_)


def test_other_code_pages_work_when_the_symbols_fit() -> None:
    layout = ReceiptLayout(codepage="cp437", currency_symbols={})
    data = build_receipt(sale_doc(), layout, copy=False)
    assert data.startswith(b"\x1bt\x00")
    assert b"EUR 2.50\n" in data


# --- properties -----------------------------------------------------------------------------

MAX_SAFE = 2**53 - 1
PROFILE_COLUMNS = {"TM-T20II": 48, "NT-5890K": 32, "OCD-300": 20}
texts = st.text(max_size=50)
names = st.text(min_size=1, max_size=30)
money = st.integers(-MAX_SAFE, MAX_SAFE)
qtys = st.one_of(
    st.integers(-MAX_SAFE, MAX_SAFE), st.from_regex(r"-?\d{1,9}(\.\d{1,6})?", fullmatch=True)
)
shown = st.one_of(st.none(), texts, st.integers(0, 10**9))
lines_ = st.fixed_dictionaries(
    {"sku": names, "qty": qtys, "amount": money},
    optional={
        "name": st.one_of(texts, st.integers(0, 999)),
        "unit_price": money,
        "discount": money,
        "tax": money,
        "tax_rate": st.one_of(st.sampled_from(["19", "7", "7%", "0.0"]), st.integers(0, 25)),
    },
)
cards = st.fixed_dictionaries(
    {},
    optional={
        key: shown
        for key in ("masked_pan", "card_name", "auth_code", "trace_number", "terminal_id")
    },
)
payments_ = st.fixed_dictionaries(
    {"method": names, "amount": money}, optional={"card": st.one_of(st.none(), cards)}
)
sales = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "currency": st.sampled_from(["EUR", "USD", "JPY", "KWD", "CLF", "XXX"]),
        "total": money,
        "lines": st.lists(lines_, max_size=5),
        "payments": st.lists(payments_, max_size=3),
    },
    optional={"meta": st.dictionaries(names, texts, max_size=2)},
)
sale_docs = st.fixed_dictionaries(
    {
        "kind": st.just("sale"),
        "store_id": names,
        "terminal_id": names,
        "seq": st.integers(1, MAX_SAFE),
        "receipt_no": st.one_of(st.just("S1-T1-000001"), names),
        "created_at": st.one_of(st.just("2024-05-01T10:15:30.123Z"), names),
        "hash": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        "sale": sales,
    }
)
text_docs = st.fixed_dictionaries(
    {"kind": st.just("text"), "title": st.none() | texts, "lines": st.lists(texts, max_size=5)},
    optional={"code": st.none() | names},
)
layouts = st.builds(
    ReceiptLayout,
    profile=st.sampled_from(["default", "TM-T88V", "TM-T20II", "NT-5890K", "TSP600", "OCD-300"]),
    columns=st.none() | st.integers(16, 80),
    header=st.lists(texts, max_size=2).map(tuple),
    footer=st.lists(texts, max_size=2).map(tuple),
    code=st.sampled_from(["qr", "barcode", "none"]),
    show_hash=st.booleans(),
    decimal_separator=st.sampled_from([".", ","]),
    max_name_lines=st.integers(1, 3),
    feed_lines=st.integers(0, 2),
    cut=st.sampled_from(["full", "partial", "none"]),
)
json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), texts, st.lists(st.none(), max_size=1),
    st.dictionaries(texts, st.none(), max_size=1),
)  # fmt: skip


def _check(document: Any, layout: ReceiptLayout, copy: bool) -> None:
    """Either both forms fail with ValueError, or the bytes decode to the text form's lines."""
    try:
        text = receipt_text(document, layout, copy=copy)
    except ValueError:
        with pytest.raises(ValueError):
            build_receipt(document, layout, copy=copy)
        return
    data = build_receipt(document, layout, copy=copy)
    columns = layout.columns or PROFILE_COLUMNS.get(layout.profile, 42)
    lines = text.splitlines()
    # Only a value that could not share a line (an amount, a receipt number) may be wider.
    assert all(len(line) <= columns or not line.startswith(" ") for line in lines)
    assert printed(decode(data)) == printed(as_printed(lines, layout.profile))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(sale_docs, text_docs), layout=layouts, copy=st.booleans())
def test_generated_documents_print_or_raise_value_error(
    document: dict[str, Any], layout: ReceiptLayout, copy: bool
) -> None:
    _check(document, layout, copy)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(sale_docs, text_docs), data=st.data())
def test_damaged_documents_raise_only_value_error(document: dict[str, Any], data: Any) -> None:
    damaged = copying.deepcopy(document)
    path = data.draw(st.sampled_from(_paths(damaged)))
    parent = damaged
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    _check(damaged, ReceiptLayout(), copy=False)
