"""Concert E+ codec and ECR link: byte-exact frames, parsing, the ENQ/ACK dance, fuzzing."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.devices.payment.concert.codec import (
    ACK,
    ENQ,
    EOT,
    NAK,
    STX,
    Answer,
    AnswerFlag,
    FrameError,
    Request,
    TransactionType,
    encode_answer,
    frame,
    lrc,
    parse_answer,
    parse_request,
    read_frame,
)
from edged.devices.payment.concert.link import (
    ENQ_ATTEMPTS,
    RECEIVE_ATTEMPTS,
    SEND_ATTEMPTS,
    Alive,
    AnswerReceived,
    EcrLink,
    NotStarted,
    Phase,
    RequestAccepted,
    Unresolved,
    Wait,
)
from edged.devices.state import ProtocolError

# The reference's worked example: 10.00 EUR, card, debit, short answer.
EXAMPLE_MESSAGE = b"0100001000010978          A010B010"
EXAMPLE_FRAME = b"\x02" + EXAMPLE_MESSAGE + b"\x03\x07"
PAN = "4970101234567894"
SHORT = Answer("01", 0, 1000, "1", "978", " " * 10)


def ok_answer(status: int = 0, amount: int = 1000, report: str | None = None) -> bytes:
    return frame(encode_answer(Answer("01", status, amount, "1", "978", " " * 10), report))


# -- codec ----------------------------------------------------------------------------------


def test_reference_example_is_byte_exact() -> None:
    message = Request(amount=1000).encode()
    assert message == EXAMPLE_MESSAGE
    assert len(message) == 34
    assert frame(message) == EXAMPLE_FRAME
    assert lrc(EXAMPLE_MESSAGE + b"\x03") == 0x07


def test_request_fields_sit_at_their_offsets() -> None:
    message = Request(
        amount=12345,
        currency_numeric="953",
        pos_number="42",
        answer_flag=AnswerFlag.WITH_REPORT,
        payment_mode="C",
        transaction_type=TransactionType.REFUND,
        authorization="B011",
    ).encode()
    assert message == b"4200012345" + b"1C2953" + b" " * 10 + b"A010B011"


def test_request_round_trips_through_the_terminal_side() -> None:
    request = Request(amount=99_999_999, transaction_type=TransactionType.REFUND)
    assert parse_request(request.encode()) == request


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"amount": 100_000_000}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 1, "pos_number": "00"}, "POS number"),
        ({"amount": 1, "pos_number": "1"}, "POS number"),
        ({"amount": 1, "currency_numeric": "EUR"}, "currency"),
        ({"amount": 1, "payment_mode": "12"}, "payment mode"),
    ],
)
def test_request_refuses_what_cannot_be_encoded(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Request(**kwargs)  # type: ignore[arg-type]


def test_short_answer_parses() -> None:
    message, rest = read_frame(ok_answer(status=7, amount=250) + b"\x04") or (b"", b"")
    assert len(message) == 25
    assert rest == b"\x04"
    assert parse_answer(message) == Answer("01", 7, 250, "1", "978", " " * 10)


def test_full_answer_keeps_only_the_masked_pan() -> None:
    framed = ok_answer(report=f"{PAN} 2712 some other data")
    assert len(framed) == 83
    answer = parse_answer(framed[1:-2])
    assert answer.masked_pan == "497010******7894"
    assert answer.currency_numeric == "978"
    assert answer.private == " " * 10
    assert PAN not in repr(answer)


def test_full_answer_without_a_card_number_has_no_pan() -> None:
    assert parse_answer(ok_answer(report="")[1:-2]).masked_pan is None


def test_answer_encoding_round_trips() -> None:
    assert parse_answer(encode_answer(SHORT)) == SHORT


@pytest.mark.parametrize(
    ("message", "where"),
    [
        (b"01X00001000" + b"1978" + b" " * 10, "offset 2"),
        (b"0100000A000" + b"1978" + b" " * 10, "offset 7"),
        (b"01000001000" + b"19X8" + b" " * 10, "offset 13"),
        (b"01000010000" + b"\xff978" + b" " * 10, "offset 11: 0xff"),
        (b"0100", "4 characters"),
    ],
)
def test_bad_answers_name_the_offset_and_byte(message: bytes, where: str) -> None:
    with pytest.raises(ProtocolError, match=where):
        parse_answer(message)


def test_read_frame_waits_for_the_lrc() -> None:
    assert read_frame(EXAMPLE_FRAME[:-1]) is None
    assert read_frame(EXAMPLE_FRAME[:10]) is None
    assert read_frame(b"") is None
    assert read_frame(EXAMPLE_FRAME) == (EXAMPLE_MESSAGE, b"")


def test_read_frame_reports_a_bad_lrc_and_its_extent() -> None:
    bad = EXAMPLE_FRAME[:-1] + b"\x08" + b"rest"
    with pytest.raises(FrameError, match="offset 36: LRC 0x08, expected 0x07") as caught:
        read_frame(bad)
    assert caught.value.skip == len(EXAMPLE_FRAME)


def test_read_frame_gives_up_without_etx() -> None:
    with pytest.raises(FrameError, match="no ETX") as caught:
        read_frame(b"\x02" + b"1" * 100)
    assert caught.value.skip == 101


@given(st.binary(max_size=120))
def test_parsers_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (parse_answer, parse_request, read_frame):
        with contextlib.suppress(ProtocolError):
            parse(data)


@given(st.text(alphabet="0123456789 *", max_size=55))
def test_any_full_answer_never_exposes_a_pan(report: str) -> None:
    message = b"01" + b"0" + b"00001000" + b"1" + report.ljust(55).encode() + b"978" + b" " * 10
    answer = parse_answer(message)
    digits = re.findall(r"\d{11,}", repr(answer))
    assert not digits, digits


# -- the ECR link ---------------------------------------------------------------------------


def feed(link: EcrLink, *data: bytes) -> list[object]:
    events: list[object] = []
    for chunk in data:
        events += link.receive_data(chunk)
    return events


def accepted_link() -> EcrLink:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    assert link.data_to_send() == bytes([ENQ])
    feed(link, bytes([ACK]))
    assert link.data_to_send() == EXAMPLE_FRAME
    assert feed(link, bytes([ACK])) == [RequestAccepted()]
    assert link.data_to_send() == bytes([EOT])
    assert link.wait is Wait.CARDHOLDER
    return link


def test_a_whole_payment_byte_by_byte() -> None:
    link = accepted_link()
    assert feed(link, bytes([ENQ])) == []
    assert link.data_to_send() == bytes([ACK])
    answer = ok_answer()
    events = feed(link, *(answer[i : i + 1] for i in range(len(answer))))
    assert events == [AnswerReceived(SHORT, solicited=True)]
    assert link.data_to_send() == bytes([ACK])
    assert not link.busy
    feed(link, bytes([EOT]))
    assert link.phase is Phase.IDLE
    assert link.data_to_send() == b""


def test_the_request_frame_is_sent_again_after_nak() -> None:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    link.data_to_send()
    feed(link, bytes([ACK]))
    link.data_to_send()
    for _ in range(SEND_ATTEMPTS - 1):
        assert feed(link, bytes([NAK])) == []
        assert link.data_to_send() == EXAMPLE_FRAME
    assert feed(link, bytes([ACK])) == [RequestAccepted()]


def test_too_many_naks_mean_not_started() -> None:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    feed(link, bytes([ACK]))
    link.data_to_send()
    events = feed(link, bytes([NAK]) * SEND_ATTEMPTS)
    assert len(events) == 1
    assert isinstance(events[0], NotStarted)
    assert not events[0].silent
    assert link.data_to_send().endswith(bytes([EOT]))
    assert link.phase is Phase.IDLE


def test_an_unanswered_enq_is_retried_then_not_started() -> None:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    sent = link.data_to_send()
    events: list[object] = []
    for _ in range(ENQ_ATTEMPTS):
        assert sent == bytes([ENQ])
        events += link.timed_out()  # no ACK
        assert link.data_to_send() == bytes([EOT])
        if link.phase is Phase.ENQ_PAUSE:
            assert link.wait is Wait.PAUSE
            link.timed_out()
            sent = link.data_to_send()
    assert events == [NotStarted(f"no answer to ENQ ({ENQ_ATTEMPTS} attempts)", silent=True)]
    assert not link.busy


def test_silence_after_acceptance_is_unresolved() -> None:
    link = accepted_link()
    assert link.may_have_started
    events = link.timed_out()
    assert events == [Unresolved("no answer from the terminal in time", silent=True)]
    assert link.phase is Phase.IDLE


def test_a_corrupt_answer_is_naked_and_read_again() -> None:
    link = accepted_link()
    feed(link, bytes([ENQ]))
    link.data_to_send()
    good = ok_answer()
    bad = good[:-1] + bytes([good[-1] ^ 0x55])
    assert feed(link, bad) == []
    assert link.data_to_send() == bytes([NAK])
    assert feed(link, good) == [AnswerReceived(SHORT, solicited=True)]
    assert link.data_to_send() == bytes([ACK])


def test_answers_that_never_come_through_leave_it_unresolved() -> None:
    link = accepted_link()
    feed(link, bytes([ENQ]))
    link.data_to_send()
    bad = ok_answer()[:-1] + b"\x00"
    events = feed(link, bad * RECEIVE_ATTEMPTS)
    assert len(events) == 1
    assert isinstance(events[0], Unresolved)
    assert "LRC" in events[0].reason


def test_a_readable_frame_with_a_strange_message_is_unresolved_not_retried() -> None:
    link = accepted_link()
    feed(link, bytes([ENQ]))
    link.data_to_send()
    events = feed(link, frame(b"01" + b"0" * 30))
    assert len(events) == 1
    assert isinstance(events[0], Unresolved)
    assert "32 characters" in events[0].reason
    assert link.data_to_send() == bytes([ACK])


def test_a_lost_ack_brings_the_answer_again_reported_once() -> None:
    link = accepted_link()
    feed(link, bytes([ENQ]))
    first = feed(link, ok_answer())
    again = feed(link, bytes([ENQ]), ok_answer(), bytes([EOT]))
    assert first == [AnswerReceived(SHORT, solicited=True)]
    assert again == []
    assert link.data_to_send() == bytes([ACK] * 4)  # ENQ, frame, ENQ again, frame again
    assert link.phase is Phase.IDLE


def test_a_late_answer_while_idle_is_taken_and_reported_as_unsolicited() -> None:
    link = EcrLink()
    events = feed(link, bytes([ENQ]), ok_answer(status=7), bytes([EOT]))
    assert events == [AnswerReceived(Answer("01", 7, 1000, "1", "978", " " * 10), False)]
    assert link.data_to_send() == bytes([ACK, ACK])


def test_a_request_waits_while_the_terminal_talks() -> None:
    link = EcrLink()
    feed(link, bytes([ENQ]))
    link.start_request(EXAMPLE_MESSAGE)
    assert link.data_to_send() == bytes([ACK])  # no ENQ while receiving
    feed(link, ok_answer(), bytes([EOT]))
    assert link.data_to_send() == bytes([ACK, ENQ])
    assert link.phase is Phase.ENQ_SENT


def test_a_probe_is_acknowledged_and_closed() -> None:
    link = EcrLink()
    link.start_probe()
    assert link.data_to_send() == bytes([ENQ])
    assert feed(link, bytes([ACK])) == [Alive()]
    assert link.data_to_send() == bytes([EOT])
    link.start_probe()
    assert link.timed_out() == [NotStarted("no answer to ENQ", silent=True, probe=True)]


def test_a_request_takes_over_a_probe_under_way() -> None:
    link = EcrLink()
    link.start_probe()
    link.data_to_send()
    link.start_request(EXAMPLE_MESSAGE)
    assert link.data_to_send() == b""  # the probe's ENQ serves
    feed(link, bytes([ACK]))
    assert link.data_to_send() == EXAMPLE_FRAME


def test_abandon_says_whether_the_request_may_have_started() -> None:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    assert isinstance(link.abandon(), NotStarted)
    assert isinstance(accepted_link().abandon(), Unresolved)
    assert EcrLink().abandon() is None


def test_only_one_request_at_a_time() -> None:
    link = EcrLink()
    link.start_request(EXAMPLE_MESSAGE)
    with pytest.raises(RuntimeError):
        link.start_request(EXAMPLE_MESSAGE)


@settings(max_examples=300)
@given(
    st.sampled_from(["idle", "enq", "frame", "accepted", "receiving"]),
    st.lists(
        st.one_of(
            st.binary(max_size=90),
            st.sampled_from([bytes([b]) for b in (ENQ, ACK, NAK, EOT, STX)]),
            st.just(b"timeout"),
        ),
        max_size=30,
    ),
)
def test_the_link_survives_any_bytes_in_any_phase(start: str, chunks: list[bytes]) -> None:
    link = EcrLink()
    if start != "idle":
        link.start_request(EXAMPLE_MESSAGE)
    if start in ("frame", "accepted", "receiving"):
        link.receive_data(bytes([ACK]))
    if start in ("accepted", "receiving"):
        link.receive_data(bytes([ACK]))
    if start == "receiving":
        link.receive_data(bytes([ENQ]))
    outcomes = 0
    for chunk in chunks:
        events = link.timed_out() if chunk == b"timeout" else link.receive_data(chunk)
        outcomes += sum(
            isinstance(e, NotStarted | Unresolved | AnswerReceived)
            and getattr(e, "solicited", True)
            for e in events
        )
        assert len(link._buf) <= 2 * 90 + 83
        assert len(link.data_to_send()) <= 2 * 83
    # a request ends at most once, and is still pending exactly when it has not ended
    assert outcomes <= (0 if start == "idle" else 1)
    assert link.busy == (start != "idle" and outcomes == 0)
