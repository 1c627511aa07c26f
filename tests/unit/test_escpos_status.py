"""ESC/POS status codec: request bytes, reply decoding bit by bit, the parser, people's reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.printer.status import (
    AsbStatus,
    ErrorCause,
    ErrorKind,
    Expect,
    OfflineCause,
    PaperSensor,
    PrintedMark,
    PrinterInfo,
    PrinterStatus,
    RealTimeScanner,
    StatusParser,
    Unsolicited,
    decode_asb,
    decode_real_time,
    drawer_kick,
    enable_asb,
    encode_asb,
    encode_printed_mark,
    encode_real_time,
    paper_sensor_status,
    real_time_status,
)
from edged.devices.state import ProtocolError

# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_real_time_status_request(n: int) -> None:
    assert real_time_status(n) == bytes([0x10, 0x04, n])


@pytest.mark.parametrize("n", [0, 5, 255])
def test_real_time_status_request_rejects_other_n(n: int) -> None:
    with pytest.raises(ValueError, match="1..4"):
        real_time_status(n)


def test_asb_and_gs_r_requests() -> None:
    assert enable_asb() == b"\x1d\x61\x0f"
    assert enable_asb(0) == b"\x1d\x61\x00"
    assert paper_sensor_status() == b"\x1d\x72\x01"
    with pytest.raises(ValueError, match="0..15"):
        enable_asb(16)


def test_drawer_kick_matches_python_escpos() -> None:
    # python-escpos 3.1: Dummy().cashdraw(2) == b"\x1bp\x0022", cashdraw(5) == b"\x1bp\x0122"
    assert drawer_kick(2, 100) == b"\x1bp\x0022"
    assert drawer_kick(5, 100) == b"\x1bp\x0122"


@pytest.mark.parametrize(
    ("pulse_ms", "t"), [(1, 1), (2, 1), (3, 1), (50, 25), (200, 100), (509, 254), (510, 255)]
)
def test_drawer_kick_pulse_in_2ms_steps(pulse_ms: int, t: int) -> None:
    assert drawer_kick(2, pulse_ms) == bytes([0x1B, 0x70, 0, t, t])


@pytest.mark.parametrize("pulse_ms", [0, -5, 511, 1000])
def test_drawer_kick_rejects_pulse_out_of_range(pulse_ms: int) -> None:
    with pytest.raises(ValueError, match=f"drawer pulse {pulse_ms} ms is out of range"):
        drawer_kick(2, pulse_ms)


@pytest.mark.parametrize("pin", [0, 1, 3, 4, 6])
def test_drawer_kick_rejects_other_pins(pin: int) -> None:
    with pytest.raises(ValueError, match="pin must be 2 or 5"):
        drawer_kick(pin, 100)


# --- replies, bit by bit ---------------------------------------------------------------------

_F = 0x12  # fixed bits of a DLE EOT reply: 0xx1xx10b


@pytest.mark.parametrize(
    ("byte", "reply"),
    [
        (_F, PrinterInfo(drawer_pin3_high=False, offline=False)),
        (_F | 0x04, PrinterInfo(drawer_pin3_high=True, offline=False)),
        (_F | 0x08, PrinterInfo(drawer_pin3_high=False, offline=True)),
    ],
)
def test_decode_printer_status(byte: int, reply: PrinterInfo) -> None:
    assert decode_real_time(1, byte) == reply


@pytest.mark.parametrize(
    ("byte", "field"),
    [
        (_F | 0x04, "cover_open"),
        (_F | 0x08, "feed_button"),
        (_F | 0x20, "paper_end_stop"),
        (_F | 0x40, "error"),
    ],
)
def test_decode_offline_cause(byte: int, field: str) -> None:
    reply = decode_real_time(2, byte)
    assert isinstance(reply, OfflineCause)
    assert {k for k in OfflineCause.__slots__ if getattr(reply, k)} == {field}
    assert decode_real_time(2, _F) == OfflineCause(False, False, False, False)


@pytest.mark.parametrize(
    ("byte", "field", "kind"),
    [
        (_F | 0x04, "mechanical", ErrorKind.MECHANICAL),
        (_F | 0x08, "autocutter", ErrorKind.AUTOCUTTER),
        (_F | 0x20, "unrecoverable", ErrorKind.UNRECOVERABLE),
        (_F | 0x40, "auto_recoverable", ErrorKind.AUTO_RECOVERABLE),
    ],
)
def test_decode_error_cause(byte: int, field: str, kind: ErrorKind) -> None:
    reply = decode_real_time(3, byte)
    assert isinstance(reply, ErrorCause)
    assert {k for k in ErrorCause.__slots__ if getattr(reply, k)} == {field}
    assert reply.kind is kind
    assert decode_real_time(3, _F) == ErrorCause(False, False, False, False)


def test_error_kind_priority() -> None:
    everything = decode_real_time(3, _F | 0x6C)
    assert isinstance(everything, ErrorCause)
    assert everything.kind is ErrorKind.UNRECOVERABLE
    cutter_and_heat = decode_real_time(3, _F | 0x48)
    assert isinstance(cutter_and_heat, ErrorCause)
    assert cutter_and_heat.kind is ErrorKind.AUTOCUTTER


@pytest.mark.parametrize(
    ("byte", "near_end", "paper_end"),
    [
        (0x12, False, False),  # paper adequate
        (0x1E, True, False),  # Epson: near end = bits 2,3 (0x0C)
        (0x72, False, True),  # paper end = bits 5,6 (0x60)
        (0x7E, True, True),
        (0x16, True, False),  # one of two near-end sensors (Citizen: sensor 1)
        (0x32, False, True),
    ],
)
def test_decode_paper_sensor(byte: int, near_end: bool, paper_end: bool) -> None:
    assert decode_real_time(4, byte) == PaperSensor(near_end=near_end, paper_end=paper_end)


_ASB_FIELDS = [
    (b"\x14\x00\x00\x00", "drawer_pin3_high"),
    (b"\x18\x00\x00\x00", "offline"),
    (b"\x30\x00\x00\x00", "cover_open"),
    (b"\x50\x00\x00\x00", "feed_button"),
    (b"\x10\x04\x00\x00", "mechanical"),
    (b"\x10\x08\x00\x00", "autocutter"),
    (b"\x10\x20\x00\x00", "unrecoverable"),
    (b"\x10\x40\x00\x00", "auto_recoverable"),
    (b"\x10\x00\x03\x00", "near_end"),
    (b"\x10\x00\x0c\x00", "paper_end"),
]


@pytest.mark.parametrize(("frame", "field"), _ASB_FIELDS)
def test_decode_asb_bits(frame: bytes, field: str) -> None:
    status = decode_asb(frame)
    assert {k for k in AsbStatus.__slots__ if getattr(status, k)} == {field}


def test_decode_asb_all_clear() -> None:
    assert not any(getattr(decode_asb(b"\x10\x00\x00\x00"), k) for k in AsbStatus.__slots__)


# --- the parser ------------------------------------------------------------------------------


def test_parser_matches_replies_to_requests_in_order() -> None:
    parser = StatusParser()
    for n in (1, 2, 3, 4):
        parser.expect_real_time(n)
    replies = parser.feed(b"\x1a\x32\x12\x72")
    assert replies == [
        PrinterInfo(drawer_pin3_high=False, offline=True),
        OfflineCause(cover_open=False, feed_button=False, paper_end_stop=True, error=False),
        ErrorCause(False, False, False, False),
        PaperSensor(near_end=False, paper_end=True),
    ]
    assert parser.outstanding == {Expect.REAL_TIME: 0, Expect.PAPER_MARK: 0}


def test_parser_tells_asb_real_time_and_gs_r_apart() -> None:
    parser = StatusParser()
    parser.expect_printed_mark()
    parser.expect_real_time(1)
    # An ASB frame, then the DLE EOT 1 reply (real-time, so it overtakes), then the GS r reply.
    replies = parser.feed(b"\x18\x00\x0c\x00" + b"\x16" + b"\x03")
    assert isinstance(replies[0], AsbStatus)
    assert replies[0].offline
    assert replies[0].paper_end
    assert replies[1] == PrinterInfo(drawer_pin3_high=True, offline=False)
    assert replies[2] == PrintedMark(near_end=True)


def test_parser_collects_an_asb_frame_across_feeds_and_skips_xon_xoff() -> None:
    parser = StatusParser()
    assert parser.feed(b"\x30\x13") == []
    assert parser.feed(b"\x00\x11") == []
    assert parser.feed(b"\x03\x00") == [decode_asb(b"\x30\x00\x03\x00")]


def test_parser_reports_unsolicited_replies() -> None:
    parser = StatusParser()
    assert parser.feed(b"\x12\x00") == [Unsolicited(0x12, 0), Unsolicited(0x00, 1)]


@pytest.mark.parametrize(
    ("data", "byte", "offset"),
    [(b"\x80", 0x80, 0), (b"\x12\xff", 0xFF, 1), (b"\x15", 0x15, 0), (b"\x1b", 0x1B, 0)],
)
def test_parser_rejects_bytes_of_no_form(data: bytes, byte: int, offset: int) -> None:
    parser = StatusParser("front printer")
    parser.expect_real_time(1)
    with pytest.raises(ProtocolError) as info:
        parser.feed(data)
    message = str(info.value)
    assert message.startswith("front printer: ")
    assert f"0x{byte:02X}" in message
    assert f"offset {offset}" in message


def test_parser_rejects_a_bad_asb_body_byte() -> None:
    parser = StatusParser()
    with pytest.raises(ProtocolError, match=r"0x10 at offset 2 cannot be byte 3 of a status-back"):
        parser.feed(b"\x10\x00\x10\x00")


def test_parser_counts_offsets_across_feeds() -> None:
    parser = StatusParser()
    parser.feed(b"\x10\x00\x00\x00")
    with pytest.raises(ProtocolError, match="offset 4"):
        parser.feed(b"\x81")


@given(
    st.lists(st.sampled_from(["rt1", "rt2", "rt3", "rt4", "mark"]), max_size=8),
    st.lists(st.binary(max_size=16), max_size=8),
)
def test_parser_raises_only_protocol_error(expected: list[str], chunks: list[bytes]) -> None:
    parser = StatusParser()
    for item in expected:
        if item == "mark":
            parser.expect_printed_mark()
        else:
            parser.expect_real_time(int(item[2]))
    try:
        for chunk in chunks:
            for reply in parser.feed(chunk):
                assert isinstance(
                    reply,
                    PrinterInfo
                    | OfflineCause
                    | ErrorCause
                    | PaperSensor
                    | AsbStatus
                    | PrintedMark
                    | Unsolicited,
                )
    except ProtocolError:
        pass


# --- the real-time scanner -------------------------------------------------------------------


def test_scanner_finds_requests_across_chunks() -> None:
    scanner = RealTimeScanner()
    assert scanner.feed(b"abc\x10") == []
    assert scanner.feed(b"\x04") == []
    assert scanner.feed(b"\x02\x10\x04\x04") == [2, 4]


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"\x10\x04\x10\x04\x01", [1]),  # n = 0x10 is no request; the printer rescans
        (b"\x10\x04\x00\x10\x04\x05", []),
        (b"\x1dv0\x00\x01\x00\x03\x00\x10\x04\x03", [3]),  # inside raster data: answered too
        (b"\x10\x05\x02", []),
    ],
)
def test_scanner_cases(data: bytes, found: list[int]) -> None:
    assert RealTimeScanner().feed(data) == found


@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=6))
def test_scanner_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole = RealTimeScanner().feed(data)
    scanner = RealTimeScanner()
    found: list[int] = []
    start = 0
    for cut in sorted(cuts):
        found += scanner.feed(data[start:cut])
        start = max(start, cut)
    found += scanner.feed(data[start:])
    assert found == whole


# --- status for people -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (PrinterStatus(), None),
        (PrinterStatus(paper="near_end"), None),
        (PrinterStatus(online=False, paper="out"), "paper out"),
        (PrinterStatus(online=False, cover_open=True), "cover open"),
        (PrinterStatus(online=False), "printer offline"),
        (
            PrinterStatus(online=False, error=ErrorKind.AUTOCUTTER),
            "autocutter error — open and close the cover",
        ),
        (
            PrinterStatus(online=False, error=ErrorKind.UNRECOVERABLE, cover_open=True),
            "unrecoverable error — switch the printer off and on",
        ),
        (
            PrinterStatus(online=False, error=ErrorKind.MECHANICAL),
            "paper jam — open the cover, clear the paper and close it",
        ),
        (
            PrinterStatus(online=False, error=ErrorKind.AUTO_RECOVERABLE, cover_open=True),
            "cover open",
        ),
        (
            PrinterStatus(online=False, error=ErrorKind.AUTO_RECOVERABLE),
            "printer paused (print head too hot?) — it resumes by itself",
        ),
        (PrinterStatus(online=False, cover_open=True, paper="out"), "cover open"),
    ],
)
def test_problem_for_people(status: PrinterStatus, problem: str | None) -> None:
    assert status.problem() == problem


def test_status_folds_a_poll() -> None:
    status = PrinterStatus()
    for reply in (
        decode_real_time(1, 0x1E),
        decode_real_time(2, 0x32),
        decode_real_time(3, 0x12),
        decode_real_time(4, 0x7E),
    ):
        status = status.apply(reply)
    assert status == PrinterStatus(online=False, paper="out", drawer_pin3_high=True)
    assert status.paper_out
    assert not status.paper_low
    low = status.apply(decode_real_time(1, 0x12)).apply(decode_real_time(4, 0x1E))
    assert low.paper_low
    assert low.problem() is None


def test_printed_mark_means_online_with_paper() -> None:
    status = PrinterStatus(online=False, paper="out", cover_open=True, drawer_pin3_high=True)
    assert status.apply(PrintedMark(near_end=True)) == PrinterStatus(
        paper="near_end", drawer_pin3_high=True
    )


statuses = st.builds(
    PrinterStatus,
    online=st.booleans(),
    cover_open=st.booleans(),
    paper=st.sampled_from(["ok", "near_end", "out"]),
    drawer_pin3_high=st.booleans(),
    error=st.none() | st.sampled_from(list(ErrorKind)),
)


@given(statuses)
def test_printer_side_encoding_round_trips(status: PrinterStatus) -> None:
    parser = StatusParser()
    for n in (1, 2, 3, 4):
        parser.expect_real_time(n)
    parser.expect_printed_mark()
    data = encode_asb(status) + bytes(encode_real_time(n, status) for n in (1, 2, 3, 4))
    data += bytes([encode_printed_mark(status)])
    asb, *real_time, mark = parser.feed(data)
    assert isinstance(asb, AsbStatus)
    assert PrinterStatus().apply(asb) == status
    polled = PrinterStatus()
    for reply in real_time:
        assert not isinstance(reply, Unsolicited)
        polled = polled.apply(reply)
    assert polled == status
    assert mark == PrintedMark(near_end=status.paper != "ok")
