"""LineDecoder: chunking never changes the frames, oversize lines are bounded and reported."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.api.framing import MAX_FRAME_BYTES, FrameEvent, Line, LineDecoder, Oversize


def reference(stream: bytes, limit: int) -> list[FrameEvent]:
    """What a decoder must produce for `stream`, computed the obvious way."""
    *complete, partial = stream.split(b"\n")
    events: list[FrameEvent] = [
        Oversize(limit) if len(part) > limit else Line(part) for part in complete
    ]
    if len(partial) > limit:  # reported as soon as it is too long, newline or not
        events.append(Oversize(limit))
    return events


def feed_all(decoder: LineDecoder, chunks: list[bytes]) -> list[FrameEvent]:
    events: list[FrameEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
        assert decoder.buffered <= decoder.max_frame
    return events


# Bytes rich in newlines so that lines are short and many.
stream_bytes = st.lists(
    st.one_of(st.just(b"\n"), st.binary(min_size=1, max_size=12)), max_size=40
).map(b"".join)


@st.composite
def split_anywhere(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(stream_bytes)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(split_anywhere(), st.integers(0, 16))
def test_chunking_never_changes_the_events(case: tuple[bytes, list[bytes]], limit: int) -> None:
    data, chunks = case
    chunked = feed_all(LineDecoder(limit), chunks)
    whole = feed_all(LineDecoder(limit), [data])
    assert chunked == whole == reference(data, limit)


@given(st.lists(st.binary(max_size=64), max_size=30), st.integers(0, 20))
def test_arbitrary_chunks_never_raise_and_stay_bounded(chunks: list[bytes], limit: int) -> None:
    decoder = LineDecoder(limit)
    feed_all(decoder, chunks)
    tail = decoder.eof()
    assert all(isinstance(e, Line) and len(e.data) <= limit for e in tail)
    assert decoder.buffered == 0


@given(split_anywhere(), st.integers(0, 16))
def test_one_byte_at_a_time_equals_whole(case: tuple[bytes, list[bytes]], limit: int) -> None:
    data, _ = case
    bytewise = feed_all(LineDecoder(limit), [data[i : i + 1] for i in range(len(data))])
    assert bytewise == reference(data, limit)


def test_lines_are_returned_without_newline_and_in_order() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":1}\n{"b"') == [Line(b'{"a":1}')]
    assert decoder.buffered == 4
    assert decoder.feed(b":2}\n\n") == [Line(b'{"b":2}'), Line(b"")]
    assert decoder.buffered == 0


def test_line_of_exactly_the_limit_is_accepted_one_more_is_oversize() -> None:
    decoder = LineDecoder(4)
    assert decoder.feed(b"abcd\nabcde\nok\n") == [Line(b"abcd"), Oversize(4), Line(b"ok")]


def test_oversize_is_reported_before_the_newline_arrives_and_only_once() -> None:
    decoder = LineDecoder(8)
    assert decoder.feed(b"0123456") == []
    assert decoder.feed(b"789") == [Oversize(8)]
    assert decoder.buffered == 0
    assert decoder.feed(b"x" * 100) == []  # still discarding, nothing held
    assert decoder.buffered == 0
    assert decoder.feed(b"yy\nnext\n") == [Line(b"next")]


def test_buffer_never_exceeds_the_default_limit() -> None:
    decoder = LineDecoder()
    chunk = b"x" * 65536
    events: list[FrameEvent] = []
    for _ in range(MAX_FRAME_BYTES // len(chunk) + 3):
        events += decoder.feed(chunk)
        assert decoder.buffered <= MAX_FRAME_BYTES
    assert events == [Oversize(MAX_FRAME_BYTES)]


def test_eof_returns_a_trailing_line_without_newline() -> None:
    decoder = LineDecoder()
    decoder.feed(b'{"x":1}\n{"y"')
    assert decoder.eof() == [Line(b'{"y"')]
    assert decoder.eof() == []


def test_eof_inside_an_oversize_line_returns_nothing() -> None:
    decoder = LineDecoder(2)
    assert decoder.feed(b"abc") == [Oversize(2)]
    assert decoder.eof() == []


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_frame"):
        LineDecoder(-1)
