"""What a local API method is: its name, parameters, handler, and the errors it raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edged.api import codes
from edged.api.services import Services
from edged.errors import EdgedError, Problem

MAX_PROBLEMS_IN_MESSAGE = 3
MAX_ID_CHARS = 128


class RpcError(EdgedError):
    """A JSON-RPC error a method raises on purpose; becomes the response's `error`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"{code}: {message}")


class Session(Protocol):
    """What a method may ask of the connection that called it."""

    peer: int

    def subscribe(self, types: frozenset[str]) -> None:
        """Replace this connection's event subscription (empty: unsubscribe)."""
        ...


Handler = Callable[[Services, Session, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    """A method's name, its parameters (in positional order) and its handler."""

    name: str
    params: tuple[str, ...]
    required: frozenset[str]
    handler: Handler


def invalid_params(problems: Sequence[Problem]) -> RpcError:
    """-32602 with `data.errors` = [{path, problem}] and the first problems in the message."""
    shown = "; ".join(str(p) for p in problems[:MAX_PROBLEMS_IN_MESSAGE])
    more = len(problems) - MAX_PROBLEMS_IN_MESSAGE
    if more > 0:
        shown += f" (and {more} more in data.errors)"
    return RpcError(
        codes.INVALID_PARAMS,
        f"invalid params: {shown}",
        {"errors": [{"path": p.path, "problem": p.problem} for p in problems]},
    )


def id_param(params: dict[str, Any], key: str, what: str = "id") -> str:
    """A client-chosen id (sale, payment): a string of 1 to MAX_ID_CHARS, else -32602."""
    value = params[key]
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise invalid_params(
            [Problem(key, f"must be a {what} string of 1 to {MAX_ID_CHARS} characters")]
        )
    return value
