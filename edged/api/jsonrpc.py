"""Sans-IO JSON-RPC 2.0: one frame (bytes) -> Request | Notification | Batch | ErrorResponse.

Deliberate choices, documented for clients:
- A batch (a JSON array) holds 1 to MAX_BATCH calls; its answer is one array, or nothing when
  it held only notifications. `[]` and a batch over the limit are one -32600 error.
- `id` is a string, null or any JSON number; a number is echoed with the very bytes the client
  sent (1.50e3 stays 1.50e3). Other types are -32600 with `id: null`.
- An object key may appear once (I-JSON, RFC 7493): a repeated key is -32600 when it is in the
  request object, -32602 (with its path) inside `params`.
- Errors in a frame that never identified itself (parse errors, no valid id) carry `id: null`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from edged.api import codes

RequestId = str | int | msgspec.Raw | None
MAX_BATCH = 100  # calls in one batch: one line cannot queue unbounded work
MAX_PATH_CHARS = 200  # a JSON path in an error, cut in the middle beyond this


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """`params` that repeated an object key: the call is refused with -32602 naming `path`."""

    path: str  # JSON path of the object within params, "" for params itself
    key: str

    def problem(self) -> str:
        return (
            f"key {self.key[:60]!r} appears more than once in this object; a key may appear "
            "only once (I-JSON, RFC 7493): remove the repeated one"
        )


Params = dict[str, Any] | list[Any] | DuplicateKey | None

_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class _RawId(msgspec.Struct):
    id: msgspec.Raw = msgspec.Raw(b"null")


_RAW_ID = msgspec.json.Decoder(_RawId)
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass(frozen=True, slots=True)
class Request:
    """A call that expects a response carrying the same id."""

    id: RequestId
    method: str
    params: Params


@dataclass(frozen=True, slots=True)
class Notification:
    """A call without id: it is executed but never answered, not even with an error."""

    method: str
    params: Params


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A JSON-RPC error to send back; `data` is optional extra detail."""

    id: RequestId
    code: int
    message: str
    data: Any = None

    def encode(self) -> bytes:
        return error_response(self.id, self.code, self.message, self.data)


Message = Request | Notification | ErrorResponse


@dataclass(frozen=True, slots=True)
class Batch:
    """A JSON array of 1 to MAX_BATCH calls, each parsed on its own, answered as one array."""

    items: tuple[Message, ...]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _path(segments: list[str | int]) -> str:
    """A JSON path as the API writes it: sale.lines[2].name (no leading dot)."""
    out = ""
    for seg in segments:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


def _lone_surrogate(value: Any) -> str | None:
    """Where a decoded value holds a lone UTF-16 surrogate: path and 0-based UTF-16 index."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, at = stack.pop()
        texts: list[tuple[str, list[str | int], str]] = []
        if isinstance(item, str):
            texts.append((item, at, "string"))
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                texts.append(
                    (key, at, f"key {key[:40]!r}".encode("ascii", "backslashreplace").decode())
                )
                stack.append((child, [*at, key]))
        elif isinstance(item, list):
            stack.extend((child, [*at, i]) for i, child in reversed(list(enumerate(item))))
        for text, where, what in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as bad:
                index = len(text[: bad.start].encode("utf-16-le", "surrogatepass")) // 2
                unit = f"\\u{ord(text[bad.start]):04x}"
                place = _path(where) or "the top level"
                return (
                    f"{place}: the {what} holds a lone UTF-16 surrogate {unit} at position "
                    f"{index} (0-based, in UTF-16 units as JavaScript counts); JSON text must "
                    "be Unicode: send the character's full surrogate pair, or remove it"
                )
    return None


def _locate(frame: bytes) -> str | None:
    """Describe the first JSON error with its 0-based byte offset, via the stdlib parser.

    Only on the error path: msgspec's offsets are sometimes one byte late. JSON the stdlib
    accepts but msgspec does not is mostly a lone surrogate escape: its path is named.
    """
    text = frame.decode("utf-8")  # the caller has checked UTF-8
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        at = "" if exc.msg.endswith(" at") else " at"
        return f"{exc.msg}{at} byte {len(text[: exc.pos].encode('utf-8'))}"
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError:
        return None
    return _lone_surrogate(value)


def _parse_error(frame: bytes, exc: Exception) -> ErrorResponse:
    """Explain where the frame stops being UTF-8 JSON, by byte offset when known."""
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError as bad:
        detail = f"invalid UTF-8 at byte {bad.start}: {bad.reason}"
    else:
        located = _locate(frame)
        if located is not None:
            detail = located
        elif isinstance(exc, RecursionError):
            detail = "JSON nested too deeply"
        elif str(exc) == "Input data was truncated":
            detail = f"JSON ends early or has a bad \\u escape (frame of {len(frame)} bytes)"
        else:
            detail = str(exc).split(" - at `", 1)[0]  # e.g. "Number out of range"
    return ErrorResponse(None, codes.PARSE_ERROR, f"parse error: {detail}")


# -- duplicate keys ------------------------------------------------------------------------


class _Repeated(dict[str, Any]):
    """An object of the slow path that repeated `key`."""

    key = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = _Repeated(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            repeated.key = key
            break
        seen.add(key)
    return repeated


def _find_repeated(value: Any) -> tuple[list[str | int], str] | None:
    """The first object (depth first, in document order) that repeated a key, and that key."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, at = stack.pop()
        if isinstance(item, _Repeated):
            return at, item.key
        if isinstance(item, dict):
            stack.extend((child, [*at, k]) for k, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, [*at, i]) for i, child in reversed(list(enumerate(item))))
    return None


_TOO_DEEP = object()  # the slow path could not parse the frame: nested too deeply


def _with_repeats(frame: bytes, value: Any) -> Any:
    """The frame parsed again so repeated keys show (`_Repeated`), or None if none repeats.

    msgspec keeps the last of repeated keys silently. Every member of a JSON text has one ':'
    outside strings, and ':' appears nowhere else but in strings (or escaped as \\u003a). The
    decoded value encoded again has as many ':' as the frame unless a member was dropped: so
    the common path costs one encode (C) and two counts. Otherwise the stdlib parser, with a
    hook that sees every key, finds the repeated one.
    """
    if b"\\u003" not in frame and frame.count(b":") == _ENCODER.encode(value).count(b":"):
        return None
    try:
        return json.loads(frame, object_pairs_hook=_pairs)
    except RecursionError:
        return _TOO_DEEP


def _repeat_in(slow: Any) -> tuple[list[str | int], str] | None:
    if slow is None:
        return None
    if slow is _TOO_DEEP:
        return [], ""  # some object repeats a key; too deep to say which
    return _find_repeated(slow)


# -- requests -------------------------------------------------------------------------------


def _number_id(value: int | float, raw: bytes) -> RequestId:
    """A number id, to be echoed as the client wrote it (1.0 stays 1.0, -0 stays -0)."""
    ident = _RAW_ID.decode(raw).id
    if isinstance(value, int) and bytes(ident) == str(value).encode():
        return value
    return ident


def _request(
    obj: Any, raw: Callable[[], bytes], repeated: tuple[list[str | int], str] | None
) -> Message:
    """Classify one decoded call; `raw` gives its JSON text, `repeated` is a key it repeated."""
    if not isinstance(obj, dict):
        return ErrorResponse(
            None, codes.INVALID_REQUEST, f"invalid request: expected an object, got {_kind(obj)}"
        )
    has_id = "id" in obj
    req_id = obj.get("id")
    kind = type(req_id)
    id_ok = req_id is None or kind is str or kind is int or kind is float
    if kind is float or (kind is int and req_id == 0):
        req_id = _number_id(req_id, raw())  # type: ignore[arg-type]  # kind says int | float
    answer_id: RequestId = req_id if id_ok else None
    if repeated is not None and repeated[0][:1] != ["params"]:
        at, key = repeated
        where = f"in {_path(at)}" if at else "in the request object"
        what = (
            f"key {key[:60]!r} appears more than once {where}"
            if key
            else ("an object repeats a key, nested too deeply to say where")
        )
        return ErrorResponse(
            None if key in ("id", "") else answer_id,
            codes.INVALID_REQUEST,
            f"invalid request: {what}; a key may appear only once (I-JSON, RFC 7493)",
        )

    def invalid(problem: str) -> ErrorResponse:
        return ErrorResponse(answer_id, codes.INVALID_REQUEST, f"invalid request: {problem}")

    version = obj.get("jsonrpc")
    if version != "2.0":
        got = "missing" if "jsonrpc" not in obj else f"{_kind(version)} {version!r}"[:60]
        return invalid(f'"jsonrpc" must be "2.0", got {got}')
    if not id_ok:
        return invalid(f'"id" must be a string, a number or null, got {_kind(req_id)}')
    method = obj.get("method")
    if not isinstance(method, str):
        got = "missing" if "method" not in obj else _kind(method)
        return invalid(f'"method" must be a string, got {got}')
    params: Params = obj.get("params")
    if "params" in obj and not isinstance(params, dict | list):
        return invalid(f'"params" must be an object or an array, got {_kind(params)}')
    extra = sorted(k for k in obj if k not in _MEMBERS)
    if extra:
        return invalid(f"unknown member {extra[0]!r}; a request has jsonrpc, id, method, params")
    if repeated is not None:
        at, key = repeated
        inner = at[1:]
        where = _path(inner) if isinstance(params, dict) else _path(["params", *inner])
        if len(where) > MAX_PATH_CHARS:  # deep nesting: its start and its end say enough
            where = f"{where[: MAX_PATH_CHARS // 2]}…{where[-MAX_PATH_CHARS // 2 :]}"
        params = DuplicateKey(where or "params", key)
    if not has_id:
        return Notification(method, params)
    return Request(req_id, method, params)


def parse(frame: bytes) -> Message | Batch:
    """Classify one frame; never raises, every failure is an ErrorResponse to send."""
    try:
        obj = _DECODER.decode(frame)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        return _parse_error(frame, exc)
    slow = _with_repeats(frame, obj)
    if not isinstance(obj, list):
        return _request(obj, lambda: frame, _repeat_in(slow))
    if not obj:
        return ErrorResponse(
            None, codes.INVALID_REQUEST, "invalid request: an empty batch; send at least one call"
        )
    if len(obj) > MAX_BATCH:
        return ErrorResponse(
            None,
            codes.INVALID_REQUEST,
            f"invalid request: a batch of {len(obj)} calls; at most {MAX_BATCH} in one batch, "
            "send the rest in another",
        )
    raws: list[msgspec.Raw] = []

    def raw_of(i: int) -> bytes:
        if not raws:  # only for ids that are fractions or zero
            raws.extend(_RAW_ITEMS.decode(frame))
        return bytes(raws[i])

    items = []
    for i, item in enumerate(obj):
        mine = _repeat_in(slow if slow is None or slow is _TOO_DEEP else slow[i])
        items.append(_request(item, functools.partial(raw_of, i), mine))
    return Batch(tuple(items))


def result_response(req_id: RequestId, result: Any) -> bytes:
    """Encode a success response; raises TypeError if `result` is not JSON-encodable."""
    return _ENCODER.encode({"jsonrpc": "2.0", "id": req_id, "result": result})


def error_response(req_id: RequestId, code: int, message: str, data: Any = None) -> bytes:
    """Encode an error response; `data` is left out when None."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _ENCODER.encode({"jsonrpc": "2.0", "id": req_id, "error": error})


def notification(method: str, params: dict[str, Any]) -> bytes:
    """Encode a server-to-client notification (no id, never answered)."""
    return _ENCODER.encode({"jsonrpc": "2.0", "method": method, "params": params})
