"""The local API on a Unix socket: claims the path safely, serves clients, shuts down cleanly.

Each client is a `Connection` (edged/api/connection.py). Responses to pipelined requests may
come back in any order: match them by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from types import TracebackType
from typing import NoReturn, Self

import structlog

from edged.api.connection import (
    FLUSH_TIMEOUT_S,
    MAX_IN_FLIGHT,
    READ_CHUNK_BYTES,
    SEND_QUEUE_MESSAGES,
    Connection,
)
from edged.api.framing import MAX_FRAME_BYTES
from edged.api.methods import Dispatcher
from edged.api.services import Services
from edged.errors import EdgedError

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 5.0  # how long close() lets in-flight requests finish
PROBE_TIMEOUT_S = 1.0  # connecting to an existing socket to see whether it is alive
SOCKET_MODE = 0o660
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes with the terminating NUL


class ApiServerError(EdgedError):
    """The API socket cannot be served at its path; the message says why and what to do."""


class ApiServer:
    """JSON-RPC 2.0 on a Unix socket (mode 0660), serving `services` to many clients.

    Use `async with ApiServer(path, services):`, or `await start()` ... `await close()`.
    start() replaces a stale socket file but refuses (ApiServerError) if a live process
    answers on it. close() stops accepting, lets in-flight requests finish (at most
    `close_timeout_s`), answers requests that arrive meanwhile with -32004, closes every
    client and removes the socket file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        services: Services,
        *,
        max_frame: int = MAX_FRAME_BYTES,
        max_in_flight: int = MAX_IN_FLIGHT,
        send_queue: int = SEND_QUEUE_MESSAGES,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.path = os.fspath(path)
        self.services = services
        self._dispatcher = Dispatcher(services)
        self._max_frame = max_frame
        self._max_in_flight = max_in_flight
        self._send_queue = send_queue
        self._close_timeout_s = close_timeout_s
        self._server: asyncio.Server | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._conns: dict[Connection, asyncio.Task[None]] = {}
        self._peers = 0
        self._inode: int | None = None
        self.closing = False

    @property
    def clients(self) -> int:
        """Number of connected clients."""
        return len(self._conns)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind the socket (mode 0660) and start accepting; raises ApiServerError."""
        if self._runner is not None:
            raise RuntimeError("ApiServer.start() called twice")
        await self._claim_path()
        sock = self._bind()
        self._runner = asyncio.create_task(self._run(), name="api-server")
        await self._ready.wait()
        try:
            self._server = await asyncio.start_unix_server(
                self._on_connect, sock=sock, limit=READ_CHUNK_BYTES
            )
        except BaseException:
            sock.close()
            await self.close()
            raise
        log.info("api_listening", path=self.path)

    async def serve(self) -> NoReturn:
        """Start (unless started) and serve until cancelled, then close gracefully.

        Raises ApiServerError if serving stops without being asked to: its supervisor then
        binds the socket afresh.
        """
        if self._runner is None:
            await self.start()
        assert self._runner is not None
        try:
            # Shielded: a stop lets in-flight requests finish (close()) instead of cutting them.
            await asyncio.shield(self._runner)
            raise ApiServerError(f"{self.path}: the API server stopped by itself")
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop gracefully (bounded) and remove the socket file; safe to call twice."""
        if self._runner is None:
            return
        self._stop.set()
        try:
            await self._runner
        finally:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_TIMEOUT_S):
                        await self._server.wait_closed()
            self._remove_socket()
            log.info("api_closed", path=self.path)

    async def _claim_path(self) -> None:
        """Remove a stale socket file; refuse a live one, or anything that is not a socket."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH_BYTES:
            raise ApiServerError(
                f"{self.path}: a Unix socket path may have at most {MAX_SOCKET_PATH_BYTES} "
                "bytes; configure a shorter [api] socket"
            )
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ApiServerError(
                f"{self.path}: exists and is not a socket; remove it or configure another "
                "[api] socket path"
            )
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                _, writer = await asyncio.open_unix_connection(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)
            log.info("api_stale_socket_removed", path=self.path)
            return
        except FileNotFoundError:
            return
        except TimeoutError:
            raise ApiServerError(
                f"{self.path}: a process holds this socket but did not accept a connection "
                f"within {PROBE_TIMEOUT_S:g} s; is another edged running?"
            ) from None
        except OSError as exc:
            raise ApiServerError(
                f"{self.path}: cannot tell whether another process serves this socket: {exc}"
            ) from exc
        writer.close()
        raise ApiServerError(
            f"{self.path}: another process is serving this socket (another edged?); stop it "
            "or configure another [api] socket path"
        )

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            # before listen(): nobody can connect while the mode is still the umask's
            os.chmod(self.path, SOCKET_MODE)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            sock.close()
            raise ApiServerError(
                f"{self.path}: cannot create the API socket: {exc.strerror or exc}; check that "
                "the directory exists and the daemon may write to it"
            ) from exc
        sock.setblocking(False)
        return sock

    def _remove_socket(self) -> None:
        """Remove our socket file, but not one another process has put there since."""
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("api_socket_not_removed", path=self.path, error=str(exc))

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._ready.set()
            await self._stop.wait()
            await self._shutdown()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.closing or self._tg is None:
            writer.transport.abort()
            return
        self._peers += 1
        conn = Connection(
            self._peers,
            reader,
            writer,
            self._dispatcher,
            self.services.events,
            max_frame=self._max_frame,
            max_in_flight=self._max_in_flight,
            send_queue=self._send_queue,
        )
        self._conns[conn] = self._tg.create_task(self._serve(conn), name=f"api-client-{conn.peer}")

    async def _serve(self, conn: Connection) -> None:
        try:
            await conn.run()
        except Exception:
            log.exception("api_client_failed", peer=conn.peer)
        finally:
            self._conns.pop(conn, None)

    async def _shutdown(self) -> None:
        self.closing = True
        if self._server is not None:
            self._server.close()  # stop accepting
        conns = list(self._conns)
        for conn in conns:
            conn.shutting_down = True
        try:
            async with asyncio.timeout(self._close_timeout_s):
                for conn in conns:
                    await conn.idle.wait()
        except TimeoutError:
            stuck = [(c, t) for c, t in self._conns.items() if c.in_flight]
            log.warning(
                "api_close_timeout",
                timeout_s=self._close_timeout_s,
                in_flight=sum(c.in_flight for c, _ in stuck),
            )
            for _, task in stuck:
                task.cancel()
        for conn in list(self._conns):
            conn.stop_reading()
