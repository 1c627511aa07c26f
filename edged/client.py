"""An asyncio client of the local API, for Python POS UIs, the demo, the bench and the tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import msgspec

from edged.errors import EdgedError

MAX_LINE = 1 << 20
CALL_TIMEOUT_S = 30.0


class ApiError(EdgedError):
    """The daemon answered a JSON-RPC error; `code` and `data` as sent."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.data = data
        super().__init__(f"{message} (code {code})")


class ApiClient:
    """`async with ApiClient(path) as c: await c.call("status")`; calls may run concurrently."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> ApiClient:
        reader, self._writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE + 1)
        self._reader_task = asyncio.create_task(self._read(reader), name="api-client-reader")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = msgspec.json.decode(line)
                if message.get("method") == "event":
                    self._events.put_nowait(message["params"])
                    continue
                future = self._waiting.pop(message.get("id"), None)
                if future is None or future.done():
                    continue
                if "error" in message:
                    error = message["error"]
                    future.set_exception(
                        ApiError(error["code"], error["message"], error.get("data"))
                    )
                else:
                    future.set_result(message["result"])
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("edged closed the connection"))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its answer."""
        assert self._writer is not None, "use `async with`"
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        request = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self._writer.write(msgspec.json.encode(request) + b"\n")
        async with asyncio.timeout(CALL_TIMEOUT_S):
            return await future

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Notifications after `subscribe`, as `{"type": ..., "data": ...}`."""
        while True:
            yield await self._events.get()
