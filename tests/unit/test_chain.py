"""The canonical form and hash chain must be recomputable from the spec alone (invariant 4)."""

from __future__ import annotations

import hashlib
import json
import math
import struct

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.chain import (
    GENESIS_HASH,
    CanonicalError,
    canonical,
    canonical_exact,
    entry_bytes,
    entry_hash,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def test_rfc8785_examples() -> None:
    # Key order is by UTF-16 code units: U+1F600 (D83D DE00) sorts before U+FB33.
    value = {"\ufb33": 3, "\U0001f600": 2, "€": 1, "b": [1, 2.5, None, True], "a": 'é\n"'}
    assert canonical(value) == (
        '{"a":"é\\n\\"","b":[1,2.5,null,true],"€":1,"\U0001f600":2,"\ufb33":3}'.encode()
    )


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (100.0, "100"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (123.456, "123.456"),
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (333333333.3333333, "333333333.3333333"),
        # From the RFC 8785 appendix (IEEE 754 bit patterns).
        (struct.unpack(">d", bytes.fromhex("4340000000000001"))[0], "9007199254740994"),
        (struct.unpack(">d", bytes.fromhex("44b52d02c7e14af5"))[0], "9.999999999999997e+22"),
        (struct.unpack(">d", bytes.fromhex("44b52d02c7e14af6"))[0], "1e+23"),
        (6.149967769412922e16, "61499677694129220"),
        # Between 0.1 and 1 ECMAScript writes a leading zero; a negative whole float keeps its
        # sign and loses its ".0": an auditor recomputing with RFC 8785 gets these bytes.
        (0.5, "0.5"),
        (0.25, "0.25"),
        (0.1, "0.1"),
        (-0.5, "-0.5"),
        (-1.0, "-1"),
        (-100.0, "-100"),
        (-1e21, "-1e+21"),
        (-1e-7, "-1e-7"),
        (1.5e-7, "1.5e-7"),
        (1.5e300, "1.5e+300"),
    ],
)
def test_numbers_follow_ecmascript(number: float, text: str) -> None:
    assert canonical(number) == text.encode()
    assert canonical({"n": [number]}) == b'{"n":[' + text.encode() + b"]}"  # the fast path too


def test_timestamps_take_the_fast_path() -> None:
    value = {"created_at": "2026-11-23T09:41:00.123Z", "qty": "0.350", "total": 1299}
    assert canonical(value) == msgspec.json.encode(value, order="sorted")


@pytest.mark.parametrize(
    "bad",
    [
        math.nan,
        math.inf,
        2**53 + 1,
        {"a": [2**53 + 1]},
        {1: "x"},
        b"bytes",
        "\ud800",
        {"k": "\ud800"},
    ],
)
def test_values_without_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalError):
        canonical(bad)


@given(json_values)
def test_fast_path_equals_the_reference(value: object) -> None:
    assert canonical(value) == canonical_exact(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\ufb33": 2},
        {"a": 1.0, "b": [0.5, 1e21]},
        [1e-7],
        {"n": 9007199254740993 - 1},
        {"s": ":1.5 looks like a number"},
        {"t": "2026-11-23T09:41:00.123Z", "n": [1, 2.5], "x": {"y": -1e-7}},
        {"big": 61499677694129220},
        {"e": '\u2028\x7f\x1f"\\/'},
    ],
)
def test_fast_path_edge_cases(value: object) -> None:
    assert canonical(value) == canonical_exact(value)


def _as_doubles(value: object) -> object:
    """What a JSON parser that reads every number as a double sees."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    assert isinstance(value, dict)
    return {k: _as_doubles(v) for k, v in value.items()}


@given(json_values)
def test_canonical_is_json_that_round_trips(value: object) -> None:
    text = canonical(value)
    assert _as_doubles(json.loads(text)) == _as_doubles(value)
    assert canonical(json.loads(text)) == text  # idempotent, also for a re-parsed copy
    assert b"\n" not in text  # no insignificant whitespace


def test_entry_bytes_equal_canonical_of_whole_entry() -> None:
    sale = {"id": "x", "total": 5, "lines": [{"sku": "é", "qty": "0.350", "amount": 5}]}
    expected = canonical(
        {
            "seq": 7,
            "id": "x",
            "receipt_no": "S-T-000007",
            "created_at": "2026-11-23T09:41:00.123Z",
            "sale": sale,
        }
    )
    got = entry_bytes(7, "x", "S-T-000007", "2026-11-23T09:41:00.123Z", canonical(sale))
    assert got == expected


def test_hash_is_sha256_of_prev_and_canonical() -> None:
    body = b'{"seq":1}'
    assert entry_hash(GENESIS_HASH, body) == hashlib.sha256(bytes(32) + body).digest()


@pytest.mark.parametrize("field", ["sale_id", "receipt_no", "created_at"])
def test_entry_bytes_refuse_a_lone_surrogate(field: str) -> None:
    strings = {"sale_id": "x", "receipt_no": "S-T-1", "created_at": "2026-11-23T09:41:00.123Z"}
    strings[field] = "bad\udc80"
    with pytest.raises(CanonicalError, match="lone UTF-16 surrogate"):
        entry_bytes(1, strings["sale_id"], strings["receipt_no"], strings["created_at"], b"{}")
