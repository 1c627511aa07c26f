"""ZVT sans-IO layer: byte-exact framing and APDUs, BMP fields, code tables, the conversation."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.payment.base import Authorisation, Outcome, mask_pan
from edged.devices.payment.zvt import codes, commands, currencies, framing, messages, protocol
from edged.devices.payment.zvt.apdu import (
    ACK_APDU,
    Apdu,
    ApduStreamDecoder,
    negative_ack,
    parse_apdu,
)
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.fields import (
    BMPS,
    bcd_decode,
    bcd_digits,
    bcd_encode,
    decode_bmps,
    encode_bmp,
    encode_bmps,
)
from edged.devices.payment.zvt.framing import Ack, BadFrame, Frame, FrameDecoder, Nak
from edged.devices.payment.zvt.protocol import Conversation, Finished, Phase, Reply, Status
from edged.devices.payment.zvt.tlv import Tlv, decode_tlv
from edged.devices.state import ProtocolError

# The reference's worked example: an authorization for 10.00.
EXAMPLE_APDU = bytes.fromhex("06 01 07 04 00 00 00 00 10 00")
EXAMPLE_FRAME = bytes.fromhex("10 02 06 01 07 04 00 00 00 00 10 10 00 10 03 62 91")
PAN = "6799998900000000019"
PAN_BCD = bytes.fromhex("6799998900000000019F")

# A 04 0F Status-Information written out by hand, field by field.
STATUS_INFO = bytes.fromhex(
    "27 00"  # result code: success
    "04 00 00 00 00 10 00"  # amount 10.00
    "0B 00 00 12"  # trace number 12
    "0C 14 30 05"  # time 14:30:05
    "0D 11 23"  # date 23 November
    "0E 28 12"  # expiry (dropped)
    "17 00 01"  # card sequence number
    "19 40"  # payment type: offline
    "22 F1 F0 67 99 99 89 00 00 00 00 01 9F"  # PAN, 19 digits (masked when decoded)
    "29 52 50 00 38"  # terminal id
    "2A 53 49 4D 56 55 30 30 30 30 30 30 30 30 30 31"  # VU number "SIMVU0000000001"
    "3B 41 31 42 32 43 33 00 00"  # authorization attribute "A1B2C3"
    "3C F0 F0 F5 48 45 4C 4C 4F"  # additional text "HELLO" (LLLVAR)
    "49 09 78"  # currency EUR
    "87 00 42"  # receipt number 42
    "88 00 00 07"  # turnover number 7
    "8A 06"  # card type
    "8B F0 F4 56 49 53 41"  # card name "VISA" (LLVAR)
    "8C 06"  # card type id
    "A0 00"  # result code AS
    "A7 F0 F2 AA BB"  # chip data (dropped)
    "AF F0 F0 F1 00"  # EF_Info (dropped)
    "BA 01 02 03 04 05"  # AID parameter
    "D0 01"  # algorithm key
    "06 04 1F 10 01 02"  # TLV container: cardholder identification = online PIN
)


def status_apdu(data: bytes = STATUS_INFO) -> Apdu:
    return Apdu(0x04, 0x0F, data)


# --- CRC and framing ---------------------------------------------------------------------


def test_crc16_kermit_check_value_and_worked_example() -> None:
    assert framing.crc16_kermit(b"123456789") == 0x2189
    assert framing.crc16_kermit(EXAMPLE_APDU + b"\x03") == 0x9162  # sent as 62 91


def test_worked_example_authorization_apdu_and_frame() -> None:
    apdu = commands.authorization(1000)
    assert apdu.encode() == EXAMPLE_APDU
    assert framing.encode_frame(apdu.encode()) == EXAMPLE_FRAME
    assert FrameDecoder().feed(EXAMPLE_FRAME) == [Frame(EXAMPLE_APDU)]
    assert parse_apdu(EXAMPLE_APDU) == Apdu(0x06, 0x01, bytes.fromhex("04 00 00 00 00 10 00"))


def test_authorization_with_currency() -> None:
    assert commands.authorization(1000, 978).encode() == bytes.fromhex(
        "06 01 0A 04 00 00 00 00 10 00 49 09 78"
    )


def test_ack_and_nak_between_frames_but_data_inside() -> None:
    apdu = bytes([0x04, 0xFF, 0x01, framing.ACK])  # an ACK byte as data
    stream = bytes([framing.ACK, 0x41]) + framing.encode_frame(apdu) + bytes([framing.NAK])
    assert FrameDecoder().feed(stream) == [Ack(), Frame(apdu), Nak()]


def test_crc_mismatch_is_an_event_for_a_nak() -> None:
    frame = bytearray(EXAMPLE_FRAME)
    frame[-1] ^= 0x01
    (event,) = FrameDecoder().feed(bytes(frame))
    assert isinstance(event, BadFrame)
    assert "CRC mismatch" in event.reason


def test_stray_dle_reported_and_rest_of_frame_skipped() -> None:
    broken = bytes.fromhex("10 02 06 01 10 41 06 15 10 03 AA BB")  # ACK/NAK bytes inside
    events = FrameDecoder().feed(broken + EXAMPLE_FRAME)
    assert events == [BadFrame("DLE followed by 0x41 inside a frame"), Frame(EXAMPLE_APDU)]


def test_new_frame_before_end_is_reported_and_parsed() -> None:
    events = FrameDecoder().feed(bytes.fromhex("10 02 06 01") + EXAMPLE_FRAME)
    assert events == [
        BadFrame("a new frame started before the previous one ended"),
        Frame(EXAMPLE_APDU),
    ]


def test_reset_reports_only_a_frame_in_progress() -> None:
    decoder = FrameDecoder()
    decoder.feed(EXAMPLE_FRAME[:6])
    assert decoder.in_frame
    (event,) = decoder.reset()
    assert isinstance(event, BadFrame)
    assert decoder.reset() == []
    assert decoder.feed(EXAMPLE_FRAME) == [Frame(EXAMPLE_APDU)]


def test_oversize_frame_is_bounded_and_skipped() -> None:
    decoder = FrameDecoder(max_apdu=4)
    events = decoder.feed(framing.encode_frame(bytes(10)) + framing.encode_frame(b"\x80\x00\x00"))
    assert events == [BadFrame("frame longer than 4 bytes"), Frame(b"\x80\x00\x00")]


@st.composite
def split_anywhere(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.data(), st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_frames_round_trip_whatever_the_chunking(data: st.DataObject, apdus: list[bytes]) -> None:
    stream = b"".join(framing.encode_frame(a) + bytes([framing.ACK]) for a in apdus)
    decoder = FrameDecoder()
    events = []
    for chunk in data.draw(split_anywhere(stream)):
        events += decoder.feed(chunk)
    expected = list(itertools.chain.from_iterable((Frame(a), Ack()) for a in apdus))
    assert events == expected


@given(st.binary(min_size=1, max_size=40), st.data())
def test_a_changed_byte_never_passes_as_the_original(apdu: bytes, data: st.DataObject) -> None:
    frame = bytearray(framing.encode_frame(apdu))
    position = data.draw(st.integers(2, len(frame) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b not in (frame[position], framing.DLE)))
    if frame[position] == framing.DLE:
        return  # changing framing bytes changes the structure, not just the data
    frame[position] = new
    assert Frame(apdu) not in FrameDecoder().feed(bytes(frame))


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_frame_decoder_never_raises(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_apdu=32)
    for chunk in chunks:
        decoder.feed(chunk)
    decoder.reset()


# --- APDUs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, "00"), (254, "FE"), (255, "FF FF 00"), (300, "FF 2C 01"), (0xFFFF, "FF FF FF")],
)
def test_length_field_one_byte_or_extended_little_endian(size: int, header: str) -> None:
    encoded = Apdu(0x04, 0x0F, bytes(size)).encode()
    assert encoded[2:].startswith(bytes.fromhex(header))
    assert parse_apdu(encoded) == Apdu(0x04, 0x0F, bytes(size))


def test_length_beyond_two_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        Apdu(0x04, 0x0F, bytes(0x10000)).encode()


def test_parse_apdu_names_a_wrong_length() -> None:
    with pytest.raises(ZvtProtocolError, match="declares 7 data bytes but carries 6") as info:
        parse_apdu(EXAMPLE_APDU[:-1])
    assert info.value.offset == 2
    assert info.value.byte == 0x07
    assert "offset 2" in str(info.value)


def test_apdu_stream_decoder_reassembles_tcp_chunks() -> None:
    stream = ACK_APDU.encode() + Apdu(0x04, 0x0F, bytes(300)).encode() + EXAMPLE_APDU
    decoder = ApduStreamDecoder()
    apdus = [a for i in range(0, len(stream), 7) for a in decoder.feed(stream[i : i + 7])]
    assert apdus == [ACK_APDU, Apdu(0x04, 0x0F, bytes(300)), parse_apdu(EXAMPLE_APDU)]
    assert decoder.buffered == 0


def test_apdu_repr_never_shows_data() -> None:
    apdu = messages.status_information([(0x22, PAN)])
    assert PAN not in repr(apdu)
    assert PAN_BCD.hex() not in repr(apdu).lower()


# --- BCD and BMP fields ------------------------------------------------------------------


def test_bcd() -> None:
    assert bcd_encode(1000, 6) == bytes.fromhex("00 00 00 00 10 00")
    assert bcd_decode(bytes.fromhex("00 00 12")) == 12
    with pytest.raises(ValueError, match="does not fit"):
        bcd_encode(1000, 1)
    with pytest.raises(ZvtProtocolError, match="BCD nibble A") as info:
        bcd_digits(bytes.fromhex("12 3A"), base=10)
    assert info.value.offset == 11


def test_status_information_decoded_field_by_field() -> None:
    info = messages.parse_status_information(status_apdu())
    assert info == messages.StatusInfo(
        result_code=0,
        amount=1000,
        currency=978,
        trace_number=12,
        receipt_no=42,
        turnover_no=7,
        terminal_id="52500038",
        vu_number="SIMVU0000000001",
        auth_code="A1B2C3",
        masked_pan="679999*********0019",
        card_name="VISA",
        card_type=6,
        card_type_id=6,
        payment_type=0x40,
        date="1123",
        time="143005",
        additional_text="HELLO",
    )


def test_card_secrets_are_masked_or_dropped_when_decoded() -> None:
    values = decode_bmps(STATUS_INFO)
    assert values[0x22] == mask_pan(PAN)
    assert 0x0E not in values  # expiry
    assert 0xA7 not in values  # chip data
    assert 0xAF not in values  # EF_Info
    assert values[0x06] == (Tlv(0x1F10, b"\x02"),)
    assert values[0xBA] == bytes([1, 2, 3, 4, 5])
    assert PAN not in repr(values)


def test_pan_masked_by_the_terminal_with_e_nibbles() -> None:
    values = decode_bmps(bytes.fromhex("22 F1 F0 67 99 99 EE EE EE EE E0 01 9F"))
    assert values[0x22] == "679999*********0019"


def test_track_data_is_skipped() -> None:
    data = encode_bmps([(0x23, b"\x67\x99\x99\x89"), (0x27, 0)])
    assert decode_bmps(data) == {0x27: 0}


def test_receipt_number_ffff_means_none() -> None:
    assert decode_bmps(bytes.fromhex("87 FF FF 27 6C")) == {0x27: 0x6C}


def test_nested_tlv_and_long_ber_length_round_trip() -> None:
    items = (
        Tlv(0x60, children=(Tlv(0x43, bytes.fromhex("A0 00 00 00 04")), Tlv(0x41, b"\x06"))),
        Tlv(0x1F17, b"x" * 200),
    )
    encoded = encode_bmp(0x06, items)
    assert encoded[:3] == bytes.fromhex("06 81 D8")
    assert decode_bmps(encoded) == {0x06: items}


@given(
    st.integers(0, 10**12 - 1),
    st.integers(0, 999_999),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=99),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
)
def test_bmp_fields_round_trip(amount: int, trace: int, name: str, text: str) -> None:
    fields = [(0x04, amount), (0x0B, trace), (0x8B, name), (0x3C, text), (0x29, "12345678")]
    assert decode_bmps(encode_bmps(fields)) == dict(fields)


def test_unknown_bmp_and_bad_length_bytes_are_named() -> None:
    with pytest.raises(ZvtProtocolError, match="unknown BMP 0x99") as info:
        decode_bmps(bytes.fromhex("27 00 99 01"), base=3)
    assert info.value.offset == 5
    with pytest.raises(ZvtProtocolError, match="F0-F9"):
        decode_bmps(bytes.fromhex("8B F1 3A 41"))
    with pytest.raises(ZvtProtocolError, match="needs 6 bytes, 2 left"):
        decode_bmps(bytes.fromhex("04 00 10"))


def test_completion_after_status_enquiry_and_after_registration() -> None:
    enquiry = messages.enquiry_completion("SIM 1.0", 0x00)
    assert enquiry.data[:3] == bytes.fromhex("F0 F0 F7")
    assert messages.parse_completion(enquiry) == messages.Completion(
        software_version="SIM 1.0", terminal_status=0x00
    )
    registered = messages.completion([(0x19, 0), (0x29, "52500038"), (0x49, 978)])
    assert messages.parse_completion(registered) == messages.Completion(
        terminal_id="52500038", currency=978, status_byte=0
    )


def test_registration_command_bytes_and_parse() -> None:
    apdu = commands.registration("123456", 0x18, 978)
    assert apdu.encode() == bytes.fromhex("06 00 06 12 34 56 18 09 78")
    parsed = commands.parse_registration(apdu)
    assert (parsed.password, parsed.config, parsed.currency) == ("123456", 0x18, 978)


def test_password_commands() -> None:
    assert commands.reversal("000000", 42).encode() == bytes.fromhex("06 30 06 00 00 00 87 00 42")
    assert commands.refund("000000", 500, 978).encode() == bytes.fromhex(
        "06 31 0D 00 00 00 04 00 00 00 00 05 00 49 09 78"
    )
    assert commands.end_of_day("000000").encode() == bytes.fromhex("06 50 03 00 00 00")
    assert commands.repeat_receipt("000000").encode() == bytes.fromhex("06 20 03 00 00 00")
    assert commands.status_enquiry("000000").encode() == bytes.fromhex("05 01 03 00 00 00")
    assert commands.abort_command().encode() == bytes.fromhex("06 B0 00")
    with pytest.raises(ValueError, match="six digits"):
        commands.password_bcd("12345")


PARSERS: list[Callable[[bytes], Any]] = [
    parse_apdu,
    decode_bmps,
    decode_tlv,
    lambda b: messages.parse_status_information(Apdu(0x04, 0x0F, b)),
    lambda b: messages.parse_completion(Apdu(0x06, 0x0F, b)),
    lambda b: commands.parse_registration(Apdu(0x06, 0x00, b)),
    lambda b: commands.parse_password_command(Apdu(0x06, 0x31, b)),
    lambda b: messages.parse_intermediate_status(Apdu(0x04, 0xFF, b)),
]

# Arbitrary bytes, and bytes made of the pieces real messages are built from.
PIECES = st.sampled_from(
    [bytes([t]) for t in BMPS] + [b"\xf0", b"\xf9", b"\xff", b"\x1f", b"\x81", b"\x82"]
)
MESSY = st.one_of(st.binary(max_size=80), st.lists(PIECES | st.binary(max_size=3)).map(b"".join))


@pytest.mark.parametrize("parse", PARSERS)
@given(data=MESSY)
def test_parsers_raise_nothing_but_protocol_error(
    parse: Callable[[bytes], Any], data: bytes
) -> None:
    with contextlib.suppress(ProtocolError):
        parse(data)


# --- code tables -------------------------------------------------------------------------


def test_intermediate_status_texts() -> None:
    assert codes.intermediate_text(0x0A) == "insert card"
    assert codes.intermediate_text(0x0E) == codes.intermediate_text(0x17) == "please wait"
    assert codes.intermediate_text(0x01) == "enter PIN"
    assert codes.intermediate_text(0x4C) == "card not readable, remove card"
    assert codes.intermediate_text(0x4B) == "remove card"
    assert codes.intermediate_text(0x99) == "terminal status 0x99"


def test_result_code_texts() -> None:
    assert codes.result_text(0x00) == "no error"
    assert codes.result_text(0x64) == "card not readable"
    assert codes.result_text(0x6C) == "aborted at the terminal or timed out"
    assert codes.result_text(0x6F) == "wrong currency"
    assert codes.result_text(0x9C) == "please wait"
    assert "host code 0x05" in codes.result_text(0x05)
    assert codes.result_text(0x80) == "result code 0x80"


def test_currencies() -> None:
    assert currencies.currency_number("EUR") == 978
    assert currencies.currency_code(756) == "CHF"
    with pytest.raises(ValueError, match="'XYZ' is not known"):
        currencies.currency_number("XYZ")


# --- the conversation --------------------------------------------------------------------


def run(conversation: Conversation, *apdus: Apdu) -> list[protocol.Event]:
    events: list[protocol.Event] = []
    for apdu in apdus:
        events += conversation.receive(apdu)
    return events


ACK = Reply(ACK_APDU)


def test_approved_payment_conversation() -> None:
    conversation = Conversation(commands.authorization(1000, 978))
    assert conversation.phase is Phase.SENT
    events = run(
        conversation,
        ACK_APDU,
        messages.intermediate_status(0x0A),
        status_apdu(),
        messages.print_line("CARD PAYMENT"),
        messages.completion(),
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert events[:-1] == [ACK, Status(0x0A, "insert card"), ACK, ACK, ACK]
    assert finished.completed and finished.lines == ("CARD PAYMENT",)
    assert conversation.phase is Phase.DONE
    result = protocol.payment_result(finished, 1000, "EUR")
    assert result.outcome is Outcome.APPROVED
    assert result.masked_pan == "679999*********0019"
    assert (result.auth_code, result.trace_number, result.receipt_no) == ("A1B2C3", 12, 42)
    assert result.terminal_id == "52500038" and result.card_name == "VISA"
    assert result.authorisation is Authorisation.OFFLINE  # "19 40" in STATUS_INFO
    assert result.to_dict()["authorisation"] == "offline"
    assert PAN not in repr(result.to_dict())


@pytest.mark.parametrize(
    ("payment_type", "authorisation"),
    [
        ("19 40", Authorisation.OFFLINE),
        ("19 50", Authorisation.OFFLINE),  # card checked, no authorisation carried out
        ("19 60", Authorisation.ONLINE),
        ("19 70", Authorisation.UNKNOWN),  # PIN payment: online or offline, the spec says
        ("", Authorisation.UNKNOWN),  # left out
    ],
)
def test_payment_type_tells_who_approved(payment_type: str, authorisation: Authorisation) -> None:
    data = STATUS_INFO.replace(bytes.fromhex("19 40"), bytes.fromhex(payment_type))
    info = messages.parse_status_information(status_apdu(data))
    assert info.authorisation is authorisation
    assert protocol.transaction_result(info, "EUR").authorisation is authorisation
    conversation = Conversation(commands.authorization(1000))
    finished = run(conversation, ACK_APDU, status_apdu(data), messages.completion())
    assert isinstance(finished[-1], Finished)
    result = protocol.payment_result(finished[-1], 1000, "EUR")
    assert result.to_dict()["authorisation"] == str(authorisation)


@given(st.integers(0, 255))
def test_every_payment_type_byte_decodes_to_one_of_three(payment_type: int) -> None:
    data = encode_bmps([(0x27, 0), (0x04, 100), (0x19, payment_type)])
    info = messages.parse_status_information(status_apdu(data))
    assert info.payment_type == payment_type
    expected = {0x40: "offline", 0x50: "offline", 0x60: "online"}.get(payment_type, "unknown")
    assert info.authorisation == expected


def test_results_without_a_status_information_are_unknown() -> None:
    refused = run(Conversation(commands.authorization(1)), negative_ack(0x83))
    assert isinstance(refused[-1], Finished)
    result = protocol.payment_result(refused[-1], 1, "EUR")
    assert result.to_dict()["authorisation"] == "unknown"
    assert protocol.unknown_result(1, "EUR", "x").to_dict()["authorisation"] == "unknown"


def test_declined_aborted_and_refused() -> None:
    declined = run(Conversation(commands.authorization(1)), ACK_APDU, messages.pt_abort(0x64))
    assert isinstance(declined[-1], Finished)
    result = protocol.payment_result(declined[-1], 1, "EUR")
    assert (result.outcome, result.result_code) == (Outcome.DECLINED, 0x64)
    assert result.message == "declined: card not readable"

    aborted = run(Conversation(commands.authorization(1)), ACK_APDU, messages.pt_abort(0x6C))
    assert isinstance(aborted[-1], Finished)
    assert protocol.payment_result(aborted[-1], 1, "EUR").outcome is Outcome.ABORTED

    refused = run(Conversation(commands.authorization(1)), negative_ack(0x83))
    assert isinstance(refused[-1], Finished) and refused[-1].refused
    result = protocol.payment_result(refused[-1], 1, "EUR")
    assert (result.outcome, result.result_code) == (Outcome.DECLINED, 0x83)


def test_status_information_with_error_then_completion_is_a_decline() -> None:
    info = messages.status_information([(0x27, 0x05), (0x04, 1000)])
    events = run(Conversation(commands.authorization(1000)), ACK_APDU, info, messages.completion())
    assert isinstance(events[-1], Finished)
    assert protocol.payment_result(events[-1], 1000, "EUR").outcome is Outcome.DECLINED


@pytest.mark.parametrize("accept", [ACK_APDU, Apdu(0x84, 0x00), Apdu(0x84, 0x9C)])
def test_positive_acknowledgements(accept: Apdu) -> None:
    conversation = Conversation(commands.authorization(1))
    assert run(conversation, accept) == []
    assert conversation.phase is Phase.WORKING


def test_answers_to_our_abort_are_ignored_while_the_pt_works() -> None:
    conversation = Conversation(commands.authorization(1))
    events = run(
        conversation,
        ACK_APDU,
        messages.intermediate_status(0x01),
        ACK_APDU,  # the PT's answer to our 06 B0
        negative_ack(0x83),  # or: it could not abort
    )
    assert conversation.phase is Phase.WORKING
    assert events == [ACK, Status(0x01, "enter PIN")]


def test_unknown_pt_request_gets_function_not_possible() -> None:
    events = run(Conversation(commands.authorization(1)), ACK_APDU, Apdu(0x04, 0x0E, b"\x01"))
    assert events == [Reply(negative_ack(0x83))]


def test_unreadable_status_information_is_acknowledged_and_reported() -> None:
    events = run(
        Conversation(commands.authorization(1000)),
        ACK_APDU,
        status_apdu(bytes.fromhex("27 00 99 01")),
        messages.completion(),
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert "unknown BMP 0x99" in finished.problems[0]
    result = protocol.payment_result(finished, 1000, "EUR")
    assert (result.outcome, result.amount, result.masked_pan) == (Outcome.APPROVED, 1000, None)


def test_transaction_and_unknown_results() -> None:
    info = messages.parse_status_information(status_apdu())
    result = protocol.transaction_result(info, "CHF")
    assert (result.outcome, result.amount, result.currency) == (Outcome.APPROVED, 1000, "EUR")
    unknown = protocol.unknown_result(1000, "EUR", protocol.NO_ANSWER)
    assert unknown.outcome is Outcome.UNKNOWN
    assert unknown.message.startswith("no answer from the payment terminal")


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=60))
def test_conversation_never_raises(cla: int, ins: int, data: bytes) -> None:
    conversation = Conversation(commands.authorization(1))
    conversation.receive(ACK_APDU)
    for event in conversation.receive(Apdu(cla, ins, data)):
        if isinstance(event, Finished):
            protocol.payment_result(event, 1, "EUR")
