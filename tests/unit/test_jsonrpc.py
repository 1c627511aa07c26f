"""JSON-RPC 2.0 parsing: every frame becomes a Request, a Notification or an error to send."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.api import codes
from edged.api.jsonrpc import (
    MAX_BATCH,
    Batch,
    DuplicateKey,
    ErrorResponse,
    Notification,
    Request,
    error_response,
    notification,
    parse,
    result_response,
)
from edged.api.methods import METHODS, RpcError, bind_params


def error_of(frame: bytes) -> ErrorResponse:
    message = parse(frame)
    assert isinstance(message, ErrorResponse), message
    return message


def test_request_by_name() -> None:
    frame = b'{"jsonrpc":"2.0","id":7,"method":"sale.get","params":{"id":"abc"}}'
    assert parse(frame) == Request(7, "sale.get", {"id": "abc"})


def test_request_with_string_id_array_params_and_null_id() -> None:
    assert parse(b'{"jsonrpc":"2.0","id":"a","method":"m","params":[1,2.5]}') == Request(
        "a", "m", [1, 2.5]
    )
    assert parse(b'{"jsonrpc":"2.0","id":null,"method":"status"}') == Request(None, "status", None)


def test_ints_stay_ints_and_floats_stay_floats() -> None:
    message = parse(b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"b":1.0,"c":2e3}}')
    assert isinstance(message, Request)
    assert isinstance(message.params, dict)
    assert [type(v) for v in message.params.values()] == [int, float, float]


def test_notification_has_no_id() -> None:
    assert parse(b'{"jsonrpc":"2.0","method":"status"}') == Notification("status", None)


@pytest.mark.parametrize(
    ("frame", "where"),
    [
        (b'{"jsonrpc":"2.0",,}', "Expecting property name enclosed in double quotes at byte 17"),
        (b'{"\xc3\xa9":1,,}', "at byte 8"),
        (b'{"a', "Unterminated string starting at byte 1"),
        (b'{"a":1} x', "byte 8"),
        (b"NaN", "byte 0"),
        (b"[1,Infinity]", "byte 3"),
        (b'{"jsonrpc":"2.0"', "byte 16"),
        (b"", "byte 0"),
    ],
)
def test_parse_error_names_the_byte(frame: bytes, where: str) -> None:
    err = error_of(frame)
    assert err.code == codes.PARSE_ERROR
    assert err.id is None
    assert where in err.message


def test_invalid_utf8_names_the_byte_in_the_frame() -> None:
    err = error_of(b'{"jsonrpc":"2.0","method":"st\xffatus"}')
    assert err.code == codes.PARSE_ERROR
    assert "invalid UTF-8 at byte 29" in err.message


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    err = error_of(b"[" * 100_000 + b"]" * 100_000)
    assert err.code == codes.PARSE_ERROR


def test_number_out_of_range_is_a_parse_error() -> None:
    err = error_of(b'{"jsonrpc":"2.0","id":1e400,"method":"status"}')
    assert err.code == codes.PARSE_ERROR
    assert err.message == "parse error: Number out of range"


def test_lone_surrogate_escape_names_the_path_and_the_position() -> None:
    err = error_of(b'{"jsonrpc":"2.0","id":"\\ud800","method":"status"}')
    assert err.code == codes.PARSE_ERROR
    assert err.message.startswith("parse error: id: the string holds a lone UTF-16 surrogate")
    frame = (
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":{"sale":{"lines":[{},'
        b'{"name":"\xf0\x9f\x8d\x8ex\\udc00"}]}}}'  # an astral character counts 2 units
    )
    err = error_of(frame)
    assert (
        "params.sale.lines[1].name: the string holds a lone UTF-16 surrogate \\udc00 at position 3"
    ) in err.message
    err = error_of(b'[{"jsonrpc":"2.0","id":1,"method":"m","params":{"k\\ud800":1}}]')
    assert "[0].params: the key 'k\\ud800' holds a lone UTF-16 surrogate" in err.message


def test_a_batch_is_parsed_call_by_call() -> None:
    batch = parse(
        b'[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","method":"m"},'
        b'{"foo":"boo"},7]'
    )
    assert isinstance(batch, Batch)
    assert batch.items[:2] == (Request(1, "status", None), Notification("m", None))
    assert [item.code for item in batch.items[2:]] == [codes.INVALID_REQUEST] * 2  # type: ignore[union-attr]


def test_empty_and_oversize_batches_are_one_error() -> None:
    err = error_of(b"[]")
    assert (err.code, err.id) == (codes.INVALID_REQUEST, None)
    assert "empty batch" in err.message
    call = b'{"jsonrpc":"2.0","method":"status"}'
    assert isinstance(parse(b"[" + b",".join([call] * MAX_BATCH) + b"]"), Batch)
    err = error_of(b"[" + b",".join([call] * (MAX_BATCH + 1)) + b"]")
    assert err.code == codes.INVALID_REQUEST
    assert f"a batch of {MAX_BATCH + 1} calls; at most {MAX_BATCH}" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        b"0",
        b"-0",
        b"7",
        b"-7",
        b"1.0",
        b"-2.5",
        b"1e2",
        b"1E+2",
        b"-1.50e-3",
        b"0.1",
        b"123456789012345678901234567890",
        b"-18446744073709551617",
        b"1" + b"0" * 400,
    ],
)
def test_number_ids_are_echoed_byte_for_byte(raw: bytes) -> None:
    frame = b'{"jsonrpc":"2.0","id":' + raw + b',"method":"status"}'
    message = parse(frame)
    assert isinstance(message, Request)
    assert b'"id":' + raw + b"," in result_response(message.id, 1)
    err = error_of(b'{"jsonrpc":"2.0","id":' + raw + b',"method":7}')
    assert b'"id":' + raw + b"," in err.encode()
    batch = parse(b"[" + frame + b"," + frame + b"]")
    assert isinstance(batch, Batch)
    for item in batch.items:
        assert isinstance(item, Request)
        assert b'"id":' + raw + b"," in error_response(item.id, -1, "x")


@pytest.mark.parametrize(
    ("frame", "message", "answer_id"),
    [
        (
            b'{"jsonrpc":"2.0","id":1,"method":"status","method":"sale.get"}',
            "invalid request: key 'method' appears more than once in the request object",
            1,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"id":2,"method":"status"}',
            "invalid request: key 'id' appears more than once in the request object",
            None,
        ),
        (
            b'[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","jsonrpc":"2.0",'
            b'"id":2,"method":"status"}]',
            "invalid request: key 'jsonrpc' appears more than once in the request object",
            2,
        ),
    ],
)
def test_repeated_keys_of_the_request_object_are_invalid_requests(
    frame: bytes, message: str, answer_id: int | None
) -> None:
    parsed = parse(frame)
    err = parsed.items[-1] if isinstance(parsed, Batch) else parsed
    assert isinstance(err, ErrorResponse)
    assert err.code == codes.INVALID_REQUEST
    assert err.message.startswith(message)
    assert "RFC 7493" in err.message
    assert err.id == answer_id


@pytest.mark.parametrize(
    ("params", "path", "key"),
    [
        (b'{"sale":{"id":"x","id":"x"}}', "sale", "id"),
        (b'{"sale":{"meta":{"t":"10:30","t":"10:30"}}}', "sale.meta", "t"),
        (
            b'{"sale":{"lines":[{"a":1},{"sku":"1","n":{"x":[{"k":1,"k":1}]}}]}}',
            "sale.lines[1].n.x[0]",
            "k",
        ),
        (b'{"sale":{},"sale":{}}', "params", "sale"),
        (b'[{"m":{"a":1,"a":1}}]', "params[0].m", "a"),
        (b'{"sale":{"meta":{"a\\u003a":1,"a:":2}}}', "sale.meta", "a:"),
    ],
)
def test_repeated_keys_in_params_name_their_path(params: bytes, path: str, key: str) -> None:
    frame = b'{"jsonrpc":"2.0","id":5,"method":"sale.commit","params":' + params + b"}"
    message = parse(frame)
    assert message == Request(5, "sale.commit", DuplicateKey(path, key))
    with pytest.raises(RpcError) as info:
        bind_params(METHODS["sale.commit"], DuplicateKey(path, key))
    assert info.value.code == codes.INVALID_PARAMS
    assert info.value.data["errors"][0]["path"] == path
    assert f"key {key!r} appears more than once" in info.value.data["errors"][0]["problem"]


@pytest.mark.parametrize(
    "frame",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"t":"10:30:00","u":"a\\u003ab"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a:b":{":":[":",{"c":"::"}]}}}',
        b'{"jsonrpc" : "2.0", "id" : 1, "method" : "m", "params" : {"a" : {}, "b" : [{}]}}',
    ],
)
def test_colons_and_escapes_in_strings_are_no_repeated_keys(frame: bytes) -> None:
    message = parse(frame)
    assert isinstance(message, Request)
    assert isinstance(message.params, dict)


@pytest.mark.parametrize(
    ("frame", "needle", "answer_id"),
    [
        (b'"hello"', "expected an object, got a string", None),
        (b'{"id":1,"method":"status"}', '"jsonrpc" must be "2.0", got missing', 1),
        (b'{"jsonrpc":"1.0","id":1,"method":"status"}', '"jsonrpc" must be "2.0"', 1),
        (b'{"jsonrpc":2.0,"id":1,"method":"status"}', '"jsonrpc" must be "2.0"', 1),
        (b'{"jsonrpc":"2.0","id":{},"method":"status"}', '"id" must be', None),
        (b'{"jsonrpc":"2.0","id":true,"method":"status"}', '"id" must be', None),
        (b'{"jsonrpc":"2.0","id":"x","method":7}', '"method" must be a string', "x"),
        (b'{"jsonrpc":"2.0","id":"x"}', '"method" must be a string, got missing', "x"),
        (b'{"jsonrpc":"2.0","id":2,"method":"m","params":7}', '"params" must be', 2),
        (b'{"jsonrpc":"2.0","id":2,"method":"m","params":null}', '"params" must be', 2),
        (b'{"jsonrpc":"2.0","id":2,"method":"m","param":{}}', "unknown member 'param'", 2),
        (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', '"method" must be a string', None),
    ],
)
def test_invalid_requests(frame: bytes, needle: str, answer_id: Any) -> None:
    err = error_of(frame)
    assert err.code == codes.INVALID_REQUEST
    assert needle in err.message
    assert err.id == answer_id


def test_response_builders() -> None:
    assert json.loads(result_response(3, {"seq": 1})) == {
        "jsonrpc": "2.0",
        "id": 3,
        "result": {"seq": 1},
    }
    assert json.loads(error_response("a", -32003, "sale not found")) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32003, "message": "sale not found"},
    }
    with_data = json.loads(error_response(None, -32602, "bad", {"errors": []}))
    assert with_data["error"]["data"] == {"errors": []}
    assert json.loads(notification("event", {"type": "link", "data": {}})) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"type": "link", "data": {}},
    }


def test_encoded_messages_are_single_lines() -> None:
    assert b"\n" not in result_response(1, {"text": "a\nb", "more": ["\n"]})


def test_result_that_json_cannot_carry_raises_type_error() -> None:
    with pytest.raises(TypeError):
        result_response(1, object())


def check_any_message(frame: bytes) -> None:
    parsed = parse(frame)
    for message in parsed.items if isinstance(parsed, Batch) else [parsed]:
        assert isinstance(message, Request | Notification | ErrorResponse)
        if isinstance(message, ErrorResponse):
            decoded = json.loads(message.encode())
            assert decoded["error"]["code"] in (codes.PARSE_ERROR, codes.INVALID_REQUEST)
            assert decoded["id"] is None or isinstance(decoded["id"], int | float | str)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    check_any_message(frame)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

members = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_values,
        "id": st.integers() | st.text(max_size=5) | json_values,
        "method": st.sampled_from(["status", "sale.get"]) | json_values,
        "params": json_values,
        "extra": json_values,
    },
)


@given(json_values | members)
def test_arbitrary_json_never_raises(value: Any) -> None:
    check_any_message(msgspec.json.encode(value))


@given(json_values.map(msgspec.json.encode), st.integers(0, 400))
def test_mangled_json_never_raises(frame: bytes, cut: int) -> None:
    check_any_message(frame[:cut] + b"\xc3" + frame[cut:])
    check_any_message(frame[:cut])


@given(
    st.integers(-(2**63), 2**63) | st.text(max_size=20),
    st.text(min_size=1, max_size=20),
    st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)
def test_valid_requests_round_trip(req_id: int | str, method: str, params: Any) -> None:
    frame: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params is not None:
        frame["params"] = params
    assert parse(msgspec.json.encode(frame)) == Request(req_id, method, params)


# Parameter binding of the methods (pure, so tested here with the protocol).


def bind_problems(method: str, params: Any) -> list[dict[str, str]]:
    with pytest.raises(RpcError) as info:
        bind_params(METHODS[method], params)
    assert info.value.code == codes.INVALID_PARAMS
    errors: list[dict[str, str]] = info.value.data["errors"]
    return errors


def test_params_by_name_and_by_position_bind_the_same() -> None:
    sale = {"id": "x"}
    assert bind_params(METHODS["sale.commit"], {"sale": sale}) == {"sale": sale}
    assert bind_params(METHODS["sale.commit"], [sale]) == {"sale": sale}
    assert bind_params(METHODS["status"], None) == {}
    assert bind_params(METHODS["status"], []) == {}


def test_missing_unknown_and_surplus_params_are_named() -> None:
    assert bind_problems("sale.commit", {}) == [{"path": "sale", "problem": "is required"}]
    assert bind_problems("sale.commit", None) == [{"path": "sale", "problem": "is required"}]
    unknown = bind_problems("sale.get", {"id": "a", "ID": "b"})
    assert [e["path"] for e in unknown] == ["ID"]
    assert "is not a parameter of sale.get" in unknown[0]["problem"]
    surplus = bind_problems("status", [1])
    assert surplus[0]["path"] == "params"
    assert "takes 0 parameter(s)" in surplus[0]["problem"]


@given(st.dictionaries(st.text(max_size=4), json_values, min_size=1, max_size=4), st.data())
def test_any_repeated_key_is_found(obj: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(obj)))
    body = msgspec.json.encode(obj)
    repeat = msgspec.json.encode({key: obj[key]})[1:-1]
    params = body[:-1] + b"," + repeat + b"}"
    frame = b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"meta":' + params + b"}}"
    assert parse(frame) == Request(1, "m", DuplicateKey("meta", key))


def test_a_repeated_key_deep_down_is_named_with_a_shortened_path() -> None:
    deep = b"[" * 300 + b'{"k":1,"k":2}' + b"]" * 300
    frame = b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"d":' + deep + b"}}"
    message = parse(frame)
    assert isinstance(message, Request)
    assert isinstance(message.params, DuplicateKey)
    assert message.params.key == "k"
    assert message.params.path.startswith("d[0][0]")
    assert "…" in message.params.path
    assert len(message.params.path) <= 201
