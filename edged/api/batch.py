"""Running a JSON-RPC batch: its calls at once, their answers joined into one array.

The calls run concurrently (so the sale.commit calls of a batch share the journal's group
commit, each still its own sale and its own commit); the array holds one response per call
that has an id, in the order they finish. A batch of notifications only is answered with
nothing at all, as JSON-RPC 2.0 says.
"""

from __future__ import annotations

import asyncio

from edged.api.jsonrpc import Batch, ErrorResponse, Message, Request, error_response
from edged.api.methods import Dispatcher
from edged.api.methods_base import Session


def _join(answers: list[bytes | None]) -> bytes | None:
    sent = [answer for answer in answers if answer is not None]
    return b"[" + b",".join(sent) + b"]" if sent else None


async def run_batch(dispatcher: Dispatcher, batch: Batch, session: Session) -> bytes | None:
    """The encoded array of responses, or None when no call of the batch has an id."""

    async def one(item: Message) -> bytes | None:
        if isinstance(item, ErrorResponse):
            return item.encode()
        return await dispatcher.dispatch(item, session)

    return _join(list(await asyncio.gather(*(one(item) for item in batch.items))))


def refuse_batch(batch: Batch, code: int, message: str) -> bytes | None:
    """Answer every call of a batch with the same error (the daemon is shutting down)."""
    return _join(
        [
            item.encode()
            if isinstance(item, ErrorResponse)
            else error_response(item.id, code, message)
            if isinstance(item, Request)
            else None
            for item in batch.items
        ]
    )
