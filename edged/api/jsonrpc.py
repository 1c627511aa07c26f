"""Sans-IO JSON-RPC 2.0: one frame (bytes) -> Request | Notification | ErrorResponse.

Deliberate choices, documented for clients:
- Batches (a JSON array at the top level) are answered with -32600 "batches are not
  supported": send one request per line instead; pipelining gives the same throughput.
- `id` must be a string, an integer or null; other types are -32600.
- Errors in a frame that never identified itself (parse errors, no valid id) carry `id: null`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from edged.api import codes

RequestId = str | int | None
Params = dict[str, Any] | list[Any] | None

_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


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


def _locate(frame: bytes) -> str | None:
    """Describe the first JSON error with its 0-based byte offset, via the stdlib parser.

    Only on the error path: msgspec's offsets are sometimes one byte late.
    """
    text = frame.decode("utf-8")  # the caller has checked UTF-8
    try:
        json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        at = "" if exc.msg.endswith(" at") else " at"
        return f"{exc.msg}{at} byte {len(text[: exc.pos].encode('utf-8'))}"
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError:
        return None
    return None


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
            # msgspec's words for a lone surrogate escape such as "\\ud800" too
            detail = f"JSON ends early or has a bad \\u escape (frame of {len(frame)} bytes)"
        else:
            detail = str(exc).split(" - at `", 1)[0]  # e.g. "Number out of range"
    return ErrorResponse(None, codes.PARSE_ERROR, f"parse error: {detail}")


def parse(frame: bytes) -> Message:
    """Classify one frame; never raises, every failure is an ErrorResponse to send."""
    try:
        obj = _DECODER.decode(frame)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        return _parse_error(frame, exc)
    if isinstance(obj, list):
        return ErrorResponse(
            None,
            codes.INVALID_REQUEST,
            "invalid request: batches are not supported; send one request object per line",
        )
    if not isinstance(obj, dict):
        return ErrorResponse(
            None, codes.INVALID_REQUEST, f"invalid request: expected an object, got {_kind(obj)}"
        )
    has_id = "id" in obj
    req_id = obj.get("id")
    id_ok = (
        req_id is None
        or isinstance(req_id, str)
        or (isinstance(req_id, int) and not isinstance(req_id, bool))
    )
    answer_id: RequestId = req_id if id_ok else None

    def invalid(problem: str) -> ErrorResponse:
        return ErrorResponse(answer_id, codes.INVALID_REQUEST, f"invalid request: {problem}")

    version = obj.get("jsonrpc")
    if version != "2.0":
        got = "missing" if "jsonrpc" not in obj else f"{_kind(version)} {version!r}"[:60]
        return invalid(f'"jsonrpc" must be "2.0", got {got}')
    if not id_ok:
        return invalid(f'"id" must be a string, an integer or null, got {_kind(req_id)}')
    method = obj.get("method")
    if not isinstance(method, str):
        got = "missing" if "method" not in obj else _kind(method)
        return invalid(f'"method" must be a string, got {got}')
    params = obj.get("params")
    if "params" in obj and not isinstance(params, dict | list):
        return invalid(f'"params" must be an object or an array, got {_kind(params)}')
    extra = sorted(k for k in obj if k not in _MEMBERS)
    if extra:
        return invalid(f"unknown member {extra[0]!r}; a request has jsonrpc, id, method, params")
    if not has_id:
        return Notification(method, params)
    return Request(req_id, method, params)


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
