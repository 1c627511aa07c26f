"""The local API on a Unix socket: claims the path safely, serves clients, shuts down cleanly.

Each client is a `Connection` (edged/api/connection.py). Responses to pipelined requests may
come back in any order: match them by id. The server accepts by itself (not asyncio's
start_unix_server) so that it can refuse a client over `max_clients` with an answer, and stop
accepting near the descriptor limit instead of letting accept() fail in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import struct
from types import TracebackType
from typing import NoReturn, Self

import structlog

from edged import memory
from edged.api import codes, jsonrpc
from edged.api.connection import (
    MAX_IN_FLIGHT,
    READ_CHUNK_BYTES,
    SEND_QUEUE_MESSAGES,
    Connection,
)
from edged.api.framing import MAX_FRAME_BYTES
from edged.api.limits import (
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_CLIENTS,
    FD_RESERVE,
    ByteBudget,
    Tally,
    effective_max_clients,
    fds_in_use,
    raise_fd_limit,
)
from edged.api.methods import Dispatcher
from edged.api.services import Services
from edged.errors import EdgedError

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 5.0  # how long close() lets in-flight requests finish
PROBE_TIMEOUT_S = 1.0  # connecting to an existing socket to see whether it is alive
SOCKET_MODE = 0o660
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes with the terminating NUL
LISTEN_BACKLOG = 100
# accept() failing for want of descriptors or memory: wait for a client to leave, then retry
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
TRIM_DELAY_S = 1.0  # give memory back this long after a big buffer or a refusal


def _is_own_probe(client: socket.socket) -> bool:
    """A connection from this very process: the watchdog's health check, never refused (it
    would report the API dead during a flood, and systemd would restart a working daemon)."""
    try:
        raw = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    pid: int = struct.unpack("3i", raw)[0]
    return pid == os.getpid()


class ApiServerError(EdgedError):
    """The API socket cannot be served at its path; the message says why and what to do."""


class ApiServer:
    """JSON-RPC 2.0 on a Unix socket (mode 0660), serving `services` to many clients.

    Use `async with ApiServer(path, services):`, or `await start()` ... `await close()`.
    start() replaces a stale socket file but refuses (ApiServerError) if a live process
    answers on it. At most `max_clients` clients are served (fewer if the descriptor limit
    cannot hold them and FD_RESERVE besides); more are answered with -32005 and closed,
    except, with `admit_own_process`, connections from this process (the daemon's watchdog).
    close() stops accepting, lets in-flight requests finish (at most
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
        max_clients: int = DEFAULT_MAX_CLIENTS,
        max_buffered: int = DEFAULT_MAX_BUFFERED_BYTES,
        admit_own_process: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.services = services
        self._dispatcher = Dispatcher(services)
        self._max_frame = max_frame
        self._max_in_flight = max_in_flight
        self._send_queue = send_queue
        self._close_timeout_s = close_timeout_s
        self._wanted_clients = max_clients
        self.max_clients = max_clients  # effective: lowered at start if descriptors are short
        self._max_buffered = max_buffered
        self._admit_own = admit_own_process  # the daemon's health check, even when full
        self._budget = ByteBudget(max_buffered, max_clients)
        self._fd_limit = 0
        self._sock: socket.socket | None = None
        self._left = asyncio.Event()  # a client left: room for another
        self._refusals: dict[str, Tally] = {}
        self._trim: asyncio.TimerHandle | None = None
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
        self._fd_limit = raise_fd_limit()
        self.max_clients = effective_max_clients(self._wanted_clients, self._fd_limit)
        self._budget = ByteBudget(self._max_buffered, self.max_clients)
        self._sock = self._bind()
        self._runner = asyncio.create_task(self._run(), name="api-server")
        await self._ready.wait()
        log.info(
            "api_listening",
            path=self.path,
            max_clients=self.max_clients,
            max_buffered_bytes=self._max_buffered,
            fd_limit=self._fd_limit,
        )

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
            self._close_listener()
            if self._trim is not None:
                self._trim.cancel()
            for tally in (*self._refusals.values(), self._budget.refusals):
                tally.flush()
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
            sock.listen(LISTEN_BACKLOG)
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

    def _close_listener(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            assert self._sock is not None
            accepter = tg.create_task(self._accept_loop(self._sock), name="api-accept")
            self._ready.set()
            await self._stop.wait()
            accepter.cancel()
            await self._shutdown()

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if len(self._conns) >= self.max_clients and (
                fds_in_use() >= self._fd_limit - FD_RESERVE // 2
            ):
                # Even a refusal takes a descriptor: leave the rest to the journal and uplink.
                self._refused("descriptors", limit=self._fd_limit)
                await self._wait_for_leave()
                continue
            try:
                client, _ = await loop.sock_accept(sock)
            except (InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                self._refused("descriptors", limit=self._fd_limit, error=exc.strerror)
                await self._wait_for_leave()
                continue
            if len(self._conns) >= self.max_clients and not (
                self._admit_own and _is_own_probe(client)
            ):
                self._refuse(client)
                continue
            await self._adopt(client)

    async def _adopt(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, client)
        except OSError:
            client.close()
            return
        self._on_connect(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def _wait_for_leave(self) -> None:
        self._left.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._left.wait()

    def _refused(self, reason: str, **fields: object) -> None:
        tally = self._refusals.get(reason)
        if tally is None:
            tally = self._refusals[reason] = Tally("api_client_refused", "warning", reason=reason)
        tally.note(**fields)
        self.trim_soon()

    def _refuse(self, client: socket.socket) -> None:
        """Answer one -32005 line and close: the client learns why and what the limit is."""
        self._refused("max_clients", limit=self.max_clients)
        frame = jsonrpc.error_response(
            None,
            codes.OVERLOADED,
            f"too many clients: {len(self._conns)} connections are open and the limit is "
            f"{self.max_clients} ([api] max_clients); closing this connection, retry later "
            "and close connections you do not use",
            {"limit": "max_clients", "value": self.max_clients},
        )
        try:
            client.setblocking(False)
            with contextlib.suppress(OSError):
                client.recv(READ_CHUNK_BYTES)  # unread input would turn our close into a reset
            with contextlib.suppress(OSError):
                client.send(frame + b"\n")
        finally:
            client.close()

    def trim_soon(self) -> None:
        """Give freed memory back to the system soon: at most once per TRIM_DELAY_S, so a
        long flood is collected as it goes and a short one just after it ends."""
        if self._trim is None:
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_now)

    def _trim_now(self) -> None:
        # Closed connections linger in reference cycles (tasks, exceptions, frames) until
        # the cyclic gc's rare full run: collect them, then hand the freed pages back.
        self._trim = None
        memory.release()

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
            budget=self._budget,
        )
        self._conns[conn] = self._tg.create_task(self._serve(conn), name=f"api-client-{conn.peer}")

    async def _serve(self, conn: Connection) -> None:
        try:
            await conn.run()
        except Exception:
            log.exception("api_client_failed", peer=conn.peer)
        finally:
            self._conns.pop(conn, None)
            self._left.set()
            if conn.peak_buffered > READ_CHUNK_BYTES:
                self.trim_soon()

    async def _shutdown(self) -> None:
        self.closing = True
        self._close_listener()  # stop accepting
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
