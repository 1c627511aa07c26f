"""Scanner codec: framing, AIM ids, check digits, GS1 element strings, double reads."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.scanner.codec import (
    AIM_IDS,
    SYMBOLOGIES,
    Scan,
    decode_code,
    decode_frame,
    decode_text,
    split_aim,
)
from edged.devices.scanner.dedupe import DoubleReadFilter
from edged.devices.scanner.framing import Frame, ScanFramer
from edged.devices.scanner.gs1 import AIS, GS, GS1Error, parse_gs1
from edged.devices.scanner.gtin import gtin_check_digit, upce_to_upca
from edged.devices.state import ProtocolError

REFERENCE_GS1 = "]d2011231231231233310ABC123\x1d99TESTING"


def feed_all(framer: ScanFramer, chunks: list[bytes]) -> list[Frame | str]:
    """Frames, and errors as their messages (exceptions do not compare by value)."""
    out: list[Frame | str] = []
    for chunk in chunks:
        for item in framer.feed(chunk):
            out.append(str(item) if isinstance(item, ProtocolError) else item)
        assert framer.buffered <= framer.max_code + len(framer.suffix)
    return out


# --- the reference's worked examples ---------------------------------------------------------


def test_reference_gs1_datamatrix_example() -> None:
    scan = decode_text(REFERENCE_GS1)
    assert scan == Scan(
        code="011231231231233310ABC123\x1d99TESTING",
        symbology="gs1-datamatrix",
        aim="]d2",
        gs1={"01": "12312312312333", "10": "ABC123", "99": "TESTING"},
        valid=True,
        problem=None,
    )


def test_reference_example_as_bytes_over_the_wire() -> None:
    framer = ScanFramer(suffix=b"\r\n")
    wire = b"]d2011231231231233310ABC123\x1d99TESTING\r\n"
    [frame] = framer.feed(wire)
    assert frame == Frame(b"]d2011231231231233310ABC123\x1d99TESTING", 0)
    assert isinstance(frame, Frame)
    assert decode_frame(frame.data).to_event("scanner") == {
        "code": "011231231231233310ABC123\x1d99TESTING",
        "symbology": "gs1-datamatrix",
        "aim": "]d2",
        "gs1": {"01": "12312312312333", "10": "ABC123", "99": "TESTING"},
        "valid": True,
        "problem": None,
        "device": "scanner",
    }


@pytest.mark.parametrize(
    ("code", "symbology"),
    [
        ("2112233789657", "ean-13"),
        ("416000336108", "upc-a"),
        ("02345680", "ean-8"),
        ("24012345678905", "itf-14"),
    ],
)
def test_reference_check_digit_vectors_validate(code: str, symbology: str) -> None:
    assert gtin_check_digit(code[:-1]) == int(code[-1])
    assert decode_code(code) == Scan(code, symbology, None, None, True, None)


@pytest.mark.parametrize("code", ["2112233789657", "416000336108", "02345680", "24012345678905"])
def test_every_wrong_check_digit_is_invalid_and_says_the_right_one(code: str) -> None:
    for digit in "0123456789":
        if digit == code[-1]:
            continue
        scan = decode_code(code[:-1] + digit)
        assert not scan.valid
        assert scan.problem is not None
        assert f"check digit is {digit}, expected {code[-1]}" in scan.problem


# --- AIM symbology identifiers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "symbology", "valid"),
    [
        ("]E02112233789657", "ean-13", True),
        ("]E0416000336108", "upc-a", True),
        ("]E004252614", "upc-e", True),  # UPC-A 042100005264
        ("]E004252615", "upc-e", False),
        ("]E092345673", "upc-e", False),  # number system must be 0 or 1
        ("]E402345680", "ean-8", True),
        ("]E402345681", "ean-8", False),
        ("]E0123", "ean-upc", False),
        ("]E0ABCDEFGH", "ean-upc", False),
        ("]E3211223378965712", "ean-upc-addon", True),
        ("]E321122337896581234", "ean-upc-addon", False),
        ("]E112", "ean-upc-addon", True),
        ("]C1010231231231233310ABC", "gs1-128", False),
        ("]C10102312312312332", "gs1-128", False),  # GTIN check digit 2, expected 3
        ("]C10112312312312333", "gs1-128", True),
        ("]e00112312312312333", "gs1-databar", True),
        ("]d1HELLO", "datamatrix", True),
        ("]d2" + "0112312312312333", "gs1-datamatrix", True),
        ("]Q1https://example.org/", "qr", True),
        ("]Q30112312312312333", "gs1-qr", True),
        ("]A0CODE39", "code-39", True),
        ("]C0Code 128", "code-128", True),
        ("]I012345678", "itf", True),
        ("]I124012345678905", "itf-14", True),
        ("]I124012345678906", "itf-14", False),
        ("]F0A1234B", "codabar", True),
        ("]G0CODE93", "code-93", True),
        ("]L0PDF", "pdf417", True),
        ("]z0AZTEC", "aztec", True),
        ("]X0whatever", "unknown", True),
        ("]W0not a known code letter", "unknown", True),
    ],
)
def test_aim_identifiers(text: str, symbology: str, valid: bool) -> None:
    scan = decode_code(text)
    assert (scan.symbology, scan.valid, scan.aim) == (symbology, valid, text[:3])
    assert scan.code == text[3:]
    assert (scan.problem is None) == valid


def test_every_simulator_aim_id_decodes_to_its_name() -> None:
    samples = {
        "ean-13": "2112233789657",
        "upc-a": "416000336108",
        "upc-e": "04252614",
        "ean-8": "02345680",
        "itf-14": "24012345678905",
    }
    for name, aim in AIM_IDS.items():
        data = samples.get(name, "0112312312312333" if "gs1" in name else "ABC-123")
        scan = decode_code(aim + data)
        assert scan.symbology == name, (name, aim)
        assert scan.valid, (name, scan.problem)


def test_a_bracket_without_letter_and_modifier_is_data_not_an_aim_id() -> None:
    assert split_aim("]") == (None, "]")
    assert split_aim("]E") == (None, "]E")
    assert split_aim("]1x") == (None, "]1x")
    assert split_aim("]E0123") == ("]E0", "123")


def test_without_aim_only_all_digit_ean_lengths_are_inferred() -> None:
    assert decode_code("1234567").symbology == "unknown"
    assert decode_code("ABCDEFGH").symbology == "unknown"
    assert decode_code("12345678901").symbology == "unknown"
    assert decode_code("٠١٢٣٤٥٦٧").symbology == "unknown"  # Arabic-Indic digits are not EAN
    assert decode_code("(01)12312312312333").gs1 is None  # GS1 only with an AIM id


def test_upce_expansion_follows_the_last_digit_rule() -> None:
    assert upce_to_upca("01234505") == "012000003455"  # last 0-2: mfr d1 d2 last
    assert upce_to_upca("01234531") == "012300000451"  # 3
    assert upce_to_upca("01234542") == "012340000052"  # 4
    assert upce_to_upca("01234565") == "012345000065"  # 5-9


# --- GS1 element strings ---------------------------------------------------------------------


def test_gs1_fixed_length_elements_need_no_separator() -> None:
    assert parse_gs1("0112312312312333" + "17251231" + "3103001250") == {
        "01": "12312312312333",
        "17": "251231",
        "3103": "001250",
    }


def test_gs1_variable_length_elements_end_at_gs_or_the_end() -> None:
    assert parse_gs1("10LOT-7" + GS + "21SER/1" + GS + "240X" + GS + "91internal") == {
        "10": "LOT-7",
        "21": "SER/1",
        "240": "X",
        "91": "internal",
    }


def test_gs1_tolerates_a_leading_fnc1_and_gs_after_fixed_elements() -> None:
    assert parse_gs1(GS + "0112312312312333" + GS + "10A" + GS) == {
        "01": "12312312312333",
        "10": "A",
    }


def test_gs1_multi_component_ais() -> None:
    assert parse_gs1("3932978" + "1299" + GS + "4212761234") == {
        "3932": "9781299",
        "421": "2761234",
    }
    assert parse_gs1("7003" + "2512311230") == {"7003": "2512311230"}
    assert parse_gs1("2531231231231232" + "ABC") == {"253": "1231231231232ABC"}
    assert parse_gs1("2531231231231232") == {"253": "1231231231232"}


def test_gs1_parenthesised_human_form() -> None:
    assert parse_gs1("(01)12312312312333(10)ABC123(99)TESTING") == {
        "01": "12312312312333",
        "10": "ABC123",
        "99": "TESTING",
    }
    assert parse_gs1("(3103)001250(17)251200") == {"3103": "001250", "17": "251200"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "offset 0: no element string"),
        (GS, "offset 1: no element string"),
        ("0112312312312334", "offset 2: (01) GTIN: check digit 4, expected 3"),
        ("01123", "offset 2: (01) GTIN: 3 characters, needs exactly 14"),
        ("011231231231233A", "offset 15: (01) GTIN: 'A' is not allowed here (digits only)"),
        ("10" + "A" * 21, "offset 2: (10) BATCH/LOT: 21 characters, needs 1 to 20"),
        ("10" + GS + "21X", "offset 2: (10) BATCH/LOT: 0 characters, needs 1 to 20"),
        ("10AB#C", "offset 4: (10) BATCH/LOT: '#' is not allowed here (GS1 set 82 only)"),
        ("17251301", "offset 2: (17) USE BY: month 13 in date 251301 does not exist"),
        ("17250230", "offset 2: (17) USE BY: day 30 in date 250230 does not exist"),
        ("7006250100", "offset 4: (7006) FIRST FREEZE DATE: day 00 in date 250100"),
        ("77123", "offset 0: unknown or unsupported Application Identifier at '7712'"),
        ("3106123456", "offset 0: unknown or unsupported Application Identifier at '3106'"),
        ("10A" + GS + "10B", "offset 6: (10) appears twice with different values"),
        ("7007250101250", "offset 10: (7007) HARVEST DATE: last part has 3 characters, needs 6"),
        ("0112312312312333junk", "offset 16: unknown or unsupported Application Identifier"),
        ("(01)123", "offset 4: (01) GTIN: 3 characters, needs exactly 14"),
        ("(7)(10)ABC", "offset 0: expected a known AI in brackets"),
        ("(77)ABC", "offset 0: expected a known AI in brackets"),
    ],
)
def test_gs1_errors_say_where_and_why(data: str, message: str) -> None:
    with pytest.raises(GS1Error) as caught:
        parse_gs1(data)
    assert str(caught.value).startswith("GS1 " + message), str(caught.value)


def test_gs1_day_zero_means_end_of_month_for_best_before_but_not_freeze_date() -> None:
    assert parse_gs1("15251200") == {"15": "251200"}
    assert parse_gs1("15240229") == {"15": "240229"}  # 2024 is a leap year
    with pytest.raises(GS1Error, match="day 29"):
        parse_gs1("15250229")


def test_ai_table_covers_the_briefs_ais_and_is_prefix_free() -> None:
    for ai in ["00", "01", "02", "10", "11", "17", "20", "21", "22", "240", "241", "250"]:
        assert ai in AIS
    for ai in ["251", "253", "254", "30", "3103", "3922", "37", "90", "95", "99", "400", "403"]:
        assert ai in AIS
    for ai in ["410", "417", "420", "421", "8004", "8020"]:
        assert ai in AIS
    for a, b in itertools.permutations(AIS, 2):
        assert not b.startswith(a), (a, b)
    assert AIS["10"].fixed_length is None
    assert AIS["01"].fixed_length == 14
    assert AIS["01"].predefined
    assert not AIS["422"].predefined  # fixed, but must be followed by GS unless last


def test_invalid_gs1_is_reported_as_a_scan_not_an_error() -> None:
    scan = decode_text("]C110" + "A" * 21)
    assert (scan.symbology, scan.valid, scan.gs1) == ("gs1-128", False, None)
    assert scan.problem == "GS1 offset 2: (10) BATCH/LOT: 21 characters, needs 1 to 20"


# --- bytes that are not a code ---------------------------------------------------------------


def test_invalid_utf8_names_the_stream_offset_and_byte() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_frame(b"ab\xffc", device="scanner", offset=100)
    assert str(caught.value).startswith("scanner: offset 102: byte 0xff: not UTF-8")


def test_control_characters_other_than_separators_are_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_frame("é\x07".encode(), device="till-scanner", offset=10)
    assert str(caught.value).startswith("till-scanner: offset 12: byte 0x07: control character")
    assert decode_frame(b"[)>\x1e06\x1dP123\x1e\x04").code == "[)>\x1e06\x1dP123\x1e\x04"


def test_empty_code_is_refused() -> None:
    with pytest.raises(ProtocolError, match="empty code"):
        decode_frame(b"", offset=7)


def test_utf8_codes_pass_through() -> None:
    assert decode_frame("]Q1Grüße €".encode()).code == "Grüße €"


# --- framing ---------------------------------------------------------------------------------


def test_cr_suffix() -> None:
    framer = ScanFramer(suffix=b"\r")
    assert feed_all(framer, [b"123\r456\r"]) == [Frame(b"123", 0), Frame(b"456", 4)]


def test_crlf_scanner_with_cr_setting_and_lf_scanner_work_alike() -> None:
    for suffix in (b"\r", b"\n", b"\r\n"):
        framer = ScanFramer(suffix=suffix)
        assert feed_all(framer, [b"123\r\n456\n789\r"]) == [
            Frame(b"123", 0),
            Frame(b"456", 5),
            Frame(b"789", 9),
        ]


def test_prefix_and_exact_suffix() -> None:
    framer = ScanFramer(prefix=b"\x02", suffix=b"\x03")
    assert feed_all(framer, [b"\x02ABC\x03\x02DEF\x03"]) == [Frame(b"ABC", 1), Frame(b"DEF", 6)]


def test_junk_before_the_prefix_is_reported_and_the_code_kept() -> None:
    framer = ScanFramer(prefix=b"\x02", suffix=b"\r\n")
    assert feed_all(framer, [b"\x00\xff\x02ABC\r\nnoise\r\n\x02DEF\r\n"]) == [
        "scanner: offset 0: byte 0x00: 2 byte(s) outside a code; expected the prefix "
        "b'\\x02' first (check the scanner's prefix setting)",
        Frame(b"ABC", 3),
        "scanner: offset 8: byte 0x6e: 5 byte(s) outside a code; expected the prefix "
        "b'\\x02' first (check the scanner's prefix setting)",
        Frame(b"DEF", 16),
    ]


def test_partial_frames_split_across_reads() -> None:
    framer = ScanFramer(prefix=b"<<", suffix=b">>")
    assert framer.feed(b"<") == []
    assert framer.feed(b"<12") == []
    assert framer.feed(b"3>") == []
    assert framer.buffered == 6
    assert framer.feed(b"><<4") == [Frame(b"123", 2)]
    assert feed_all(framer, [b"5>", b">"]) == [Frame(b"45", 9)]
    assert framer.buffered == 0


def test_oversize_frame_is_reported_once_and_the_next_code_arrives() -> None:
    framer = ScanFramer(suffix=b"\r", max_code=8)
    out = feed_all(framer, [b"0123456789", b"0123456789" * 5, b"\rOK\r"])
    assert out == [
        "scanner: offset 0: no suffix b'\\r' within 8 bytes; the frame is dropped "
        "(check the scanner's suffix setting)",
        Frame(b"OK", 61),
    ]


def test_framer_refuses_an_empty_suffix() -> None:
    with pytest.raises(ValueError, match="suffix"):
        ScanFramer(suffix=b"")


# --- properties ------------------------------------------------------------------------------

SUFFIXES = st.sampled_from([b"\r", b"\r\n", b"\n", b"\x03", b"\t", b"<>"])
PREFIXES = st.sampled_from([b"", b"\x02", b"]]"])
# Bytes rich in terminators and prefixes so that frames are short and many.
stream_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\r", b"\n", b"\x02", b"\x03", b"<>", b"]]", b"]E0", b"\x1d"]),
        st.binary(min_size=1, max_size=10),
    ),
    max_size=40,
).map(b"".join)


@st.composite
def split_anywhere(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(stream_bytes)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(split_anywhere(), PREFIXES, SUFFIXES, st.integers(1, 16))
def test_chunking_never_changes_the_output(
    case: tuple[bytes, list[bytes]], prefix: bytes, suffix: bytes, limit: int
) -> None:
    data, chunks = case
    chunked = feed_all(ScanFramer(prefix=prefix, suffix=suffix, max_code=limit), chunks)
    whole = feed_all(ScanFramer(prefix=prefix, suffix=suffix, max_code=limit), [data])
    bytewise = feed_all(
        ScanFramer(prefix=prefix, suffix=suffix, max_code=limit),
        [data[i : i + 1] for i in range(len(data))],
    )
    assert chunked == whole == bytewise


@given(split_anywhere(), PREFIXES, SUFFIXES)
def test_arbitrary_bytes_only_ever_raise_protocol_error(
    case: tuple[bytes, list[bytes]], prefix: bytes, suffix: bytes
) -> None:
    _, chunks = case
    framer = ScanFramer(prefix=prefix, suffix=suffix, max_code=32)
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, ProtocolError):
                continue
            try:
                scan = decode_frame(item.data, offset=item.offset)
            except ProtocolError:
                continue
            assert scan.symbology in SYMBOLOGIES
            assert scan.valid == (scan.problem is None)


@given(st.binary(max_size=64))
def test_decode_frame_of_any_bytes_is_a_scan_or_protocol_error(data: bytes) -> None:
    try:
        scan = decode_frame(data)
    except ProtocolError:
        return
    assert scan.symbology in SYMBOLOGIES


@given(st.text(max_size=40))
def test_decode_code_never_raises(text: str) -> None:
    scan = decode_code(text)
    assert scan.symbology in SYMBOLOGIES
    assert scan.valid == (scan.problem is None)
    assert (scan.aim or "") + scan.code == text


@given(
    st.text(alphabet="0123456789()" + GS + "ABC-/", max_size=40)
    | st.sampled_from(sorted(AIS)).flatmap(lambda ai: st.text(max_size=20).map(ai.__add__))
)
def test_parse_gs1_raises_only_gs1_error(text: str) -> None:
    try:
        elements = parse_gs1(text)
    except GS1Error as exc:
        elements, offset = {}, exc.offset
    else:
        offset = 0
    assert 0 <= offset <= len(text)
    assert all(ai in AIS for ai in elements)


digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@given(st.sampled_from([7, 11, 12, 13]).flatmap(lambda n: st.lists(digits, min_size=n, max_size=n)))
def test_a_generated_ean_always_validates(body_digits: list[str]) -> None:
    body = "".join(body_digits)
    code = body + str(gtin_check_digit(body))
    scan = decode_code(code)
    assert scan.valid, scan
    assert scan.symbology == {8: "ean-8", 12: "upc-a", 13: "ean-13", 14: "itf-14"}[len(code)]
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert not decode_code(wrong).valid


@given(st.lists(digits, min_size=13, max_size=13), st.text(alphabet="ABC123-", min_size=1))
def test_a_generated_gs1_string_round_trips(gtin_digits: list[str], lot: str) -> None:
    body = "".join(gtin_digits)
    gtin = body + str(gtin_check_digit(body))
    lot = lot[:20]
    for aim in ("]C1", "]d2", "]Q3", "]e0"):
        scan = decode_text(f"{aim}01{gtin}10{lot}{GS}17251231")
        assert scan.gs1 == {"01": gtin, "10": lot, "17": "251231"}
        assert scan.valid


# --- double reads (dedupe.py: pure, clock passed in) -----------------------------------------


def test_same_code_within_the_interval_is_one_scan() -> None:
    f = DoubleReadFilter(0.5)
    assert f.accept("A", 100.0)
    assert not f.accept("A", 100.3)
    assert not f.accept("A", 100.7)  # the interval runs from the previous read: still held
    assert f.accept("A", 101.3)


def test_a_different_code_in_between_ends_the_run() -> None:
    f = DoubleReadFilter(0.5)
    assert [f.accept(code, 10.0 + i * 0.01) for i, code in enumerate("ABA")] == [True] * 3


def test_interval_zero_turns_the_filter_off() -> None:
    f = DoubleReadFilter(0.0)
    assert f.accept("A", 1.0)
    assert f.accept("A", 1.0)


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        DoubleReadFilter(-1)
