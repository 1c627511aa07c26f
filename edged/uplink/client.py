"""One MQTT connection to the store broker; the only importer of aiomqtt/paho on the terminal.

A new aiomqtt.Client is made for every connection attempt: the journal is our queue, and
paho's in-memory queue of a reused client would resend stale publishes after a reconnect.
Everything aiomqtt raises is unwrapped into LinkError here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import aiomqtt
import structlog

from edged.config import UplinkSection, read_password, strict_tls_hint, tls_context
from edged.errors import ConfigError, EdgedError

log = structlog.get_logger(__name__)


class _DropSocketErrors(logging.Filter):
    """paho logs every lost socket at ERROR; link_lost already reports it, at our levels."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("failed to receive on socket", "timeout on socket"))


# The stdlib logger handed to aiomqtt (and through it to paho).
_mqtt_logger = logging.getLogger("edged.uplink.mqtt")
_mqtt_logger.setLevel(logging.WARNING)
_mqtt_logger.addFilter(_DropSocketErrors())

CONNECT_TIMEOUT_S = 10.0  # TCP + TLS handshake, then again for the CONNACK
SUBSCRIBE_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0  # a clean DISCONNECT; after that the socket is just closed
# A liveness probe goes out once nothing came from the broker for this share of keepalive_s;
# the connection is declared dead after DEAD_AFTER_KEEPALIVES x keepalive_s of silence.
PROBE_AFTER_KEEPALIVES = 0.5
DEAD_AFTER_KEEPALIVES = 1.5
# Acks are cumulative, so dropping excess is safe; a dropped reference data chunk (at most
# edged.refwire.MAX_CHUNKS per snapshot) only makes that snapshot incomplete, and rejected.
MAX_QUEUED_INCOMING = 1000
PENDING_CALLS_WARN_NEVER = 1 << 30  # our window bounds pending publishes, not aiomqtt's warning
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LinkError(EdgedError):
    """The connection to the broker failed or was lost; says which broker and why."""

    def __init__(self, peer: str, problem: str) -> None:
        self.peer = peer
        self.problem = problem
        super().__init__(f"broker {peer}: {problem}")


@dataclass(frozen=True, slots=True)
class Will:
    """The retained message the broker publishes for us if we vanish without DISCONNECT."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


def terminal_client_id(cfg: UplinkSection, store_id: str, terminal_id: str) -> str:
    """The MQTT client id a terminal connects with: `client_id`, else edged-STORE-TERMINAL."""
    return cfg.client_id or f"edged-{store_id}-{terminal_id}"


def peer_of(cfg: UplinkSection) -> str:
    """How logs and status name the broker, e.g. `mqtts://store-broker:8883`."""
    return f"{'mqtts' if cfg.tls else 'mqtt'}://{cfg.host}:{cfg.effective_port}"


def _describe(exc: BaseException) -> str:
    """aiomqtt's message plus its cause (e.g. 'Disconnected ...: [code:7] connection lost')."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


_HINTS = (
    ("not authori", "check uplink.username and password_file, and the broker's ACL"),
    ("bad user name or password", "check uplink.username and password_file"),
    ("bad username or password", "check uplink.username and password_file"),
    ("certificate verify failed", "uplink.ca_file must hold the CA that signed the broker's cert"),
    ("connection refused", "is the broker running and listening on that host and port?"),
    ("timed out", "the broker does not answer: check the network path and the broker"),
)


def _with_hint(text: str) -> str:
    strict = strict_tls_hint(text)
    if strict is not None:
        return f"{text}; {strict}"
    lowered = text.lower()
    for needle, hint in _HINTS:
        if needle in lowered:
            return f"{text}; {hint}"
    return text


@dataclass(frozen=True, slots=True)
class _Secrets:
    password: str | None
    tls: ssl.SSLContext | None


def _load_secrets(cfg: UplinkSection, peer: str) -> _Secrets:
    """Read the password file and TLS files now, so a rotated certificate is picked up."""
    try:
        password = read_password(cfg, "[uplink]")
    except ConfigError as exc:
        raise LinkError(peer, f"{exc.problem}; fix the file, edged keeps retrying") from None
    try:
        context = tls_context(cfg, "[uplink]")
    except ConfigError as exc:
        raise LinkError(peer, f"{exc.problem}; fix it, edged keeps retrying") from None
    return _Secrets(password, context)


class Connection:
    """An open, subscribed MQTT connection; publishes are QoS 1 and wait for the PUBACK."""

    def __init__(self, client: aiomqtt.Client, peer: str, probe_topic: str) -> None:
        self._client = client
        self.peer = peer
        self._probe_topic = probe_topic
        self.last_rx = time.monotonic()  # last time the broker proved alive
        self._aborted = False

    async def publish(
        self, topic: str, payload: bytes, *, timeout: float, retain: bool = False
    ) -> None:
        """Publish QoS 1 and wait for the broker's PUBACK (not the collector's ack)."""
        try:
            await self._client.publish(topic, payload, qos=1, retain=retain, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise LinkError(self.peer, f"publish to {topic} failed: {_describe(exc)}") from None
        self.last_rx = time.monotonic()

    async def subscribe(self, topic: str) -> None:
        """Subscribe QoS 1 (again: the broker then sends the topic's retained messages anew)."""
        try:
            codes = await self._client.subscribe(topic, qos=1, timeout=SUBSCRIBE_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise LinkError(self.peer, f"subscribe to {topic} failed: {_describe(exc)}") from None
        if any(_refused(code) for code in codes):
            raise LinkError(
                self.peer, f"the broker refused the subscription to {topic}; check its ACL"
            )

    async def probe(self, timeout: float) -> bool:
        """A request the broker must answer: UNSUBSCRIBE from a topic we never subscribed to.

        It needs no ACL right, reaches no subscriber and changes nothing at the broker.
        True if answered, False if not within `timeout`; LinkError if it could not be sent.
        """
        try:
            await self._client.unsubscribe(self._probe_topic, timeout=timeout)
        except aiomqtt.MqttCodeError as exc:
            raise LinkError(self.peer, f"liveness probe failed: {_describe(exc)}") from None
        except aiomqtt.MqttError:
            return False  # aiomqtt's "Operation timed out"
        self.last_rx = time.monotonic()
        return True

    async def messages(self) -> AsyncIterator[Incoming]:
        """Messages on our subscriptions until the connection ends (then LinkError)."""
        try:
            async for msg in self._client.messages:
                self.last_rx = time.monotonic()
                payload = msg.payload if isinstance(msg.payload, bytes) else b""
                yield Incoming(msg.topic.value, payload, bool(msg.retain))
        except aiomqtt.MqttError as exc:
            raise LinkError(self.peer, f"connection lost: {_describe(exc)}") from None
        raise LinkError(self.peer, "connection ended")

    async def watchdog(self, keepalive_s: float) -> NoReturn:
        """Raise LinkError once the broker said nothing for DEAD_AFTER_KEEPALIVES x keepalive.

        paho alone notices a half-open connection only after about 2x keepalive (it waits a
        whole keepalive before its PINGREQ); this probes after half a keepalive of silence.
        """
        dead_after = DEAD_AFTER_KEEPALIVES * keepalive_s
        probe_after = PROBE_AFTER_KEEPALIVES * keepalive_s
        while True:
            idle = time.monotonic() - self.last_rx
            if idle >= dead_after:
                self.abort()
                raise LinkError(
                    self.peer,
                    f"no answer from the broker for {idle:.1f} s (keepalive {keepalive_s:g} s); "
                    "dropped the connection",
                )
            if idle < probe_after:
                await asyncio.sleep(probe_after - idle)
                continue
            # A timeout here is not yet death: PUBACKs or acks may have come in meanwhile.
            await self.probe(timeout=dead_after - idle)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (so the broker publishes our will)."""
        self._aborted = True
        _shutdown(self._client)

    async def _close(self) -> None:
        """Clean DISCONNECT within CLOSE_TIMEOUT_S, else just drop the socket."""
        if self._aborted:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._client.__aexit__(None, None, None)
        except (TimeoutError, aiomqtt.MqttError) as exc:
            log.debug("link_close_unclean", peer=self.peer, error=_describe(exc))
            self.abort()


def _paho(client: aiomqtt.Client) -> Any:
    # aiomqtt 2.x keeps the paho client private; this module is the one place that knows.
    return client._client


def _retrieve_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark aiomqtt's disconnect future as seen: we learn of the loss through our own calls,
    and asyncio would otherwise log "Future exception was never retrieved" after an abort."""
    future: asyncio.Future[None] = client._disconnected
    future.add_done_callback(lambda f: None if f.cancelled() else f.exception())


def _shutdown(client: aiomqtt.Client) -> None:
    """Shut the socket down; paho sees EOF and tidies up (reader, misc task, callbacks)."""
    sock = _paho(client).socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.asynccontextmanager
async def connect(
    cfg: UplinkSection,
    *,
    client_id: str,
    will: Will | None,
    subscribe: Sequence[str],
    probe_topic: str,
) -> AsyncIterator[Connection]:
    """Connect, subscribe QoS 1 to `subscribe`, yield the connection; LinkError on failure.

    `will` None: no Last Will (edgectl's short visit, with the daemon stopped)."""
    peer = peer_of(cfg)
    secrets = await asyncio.to_thread(_load_secrets, cfg, peer)
    client = aiomqtt.Client(
        cfg.host,
        cfg.effective_port,
        username=cfg.username,
        password=secrets.password,
        identifier=client_id,
        logger=_mqtt_logger,
        clean_session=True,
        will=None if will is None else aiomqtt.Will(will.topic, will.payload, qos=1, retain=True),
        keepalive=cfg.keepalive_s,
        timeout=CONNECT_TIMEOUT_S,
        tls_context=secrets.tls,
        socket_options=[NODELAY],
        max_inflight_messages=0,  # unlimited in paho: our window bounds what is in flight
        max_queued_incoming_messages=MAX_QUEUED_INCOMING,
    )
    client.pending_calls_threshold = PENDING_CALLS_WARN_NEVER
    _paho(client).connect_timeout = CONNECT_TIMEOUT_S
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        _shutdown(client)  # a CONNACK timeout leaves paho's socket open otherwise
        raise LinkError(peer, _with_hint(f"cannot connect: {_describe(exc)}")) from None
    except BaseException:
        _shutdown(client)
        raise
    _retrieve_disconnect_error(client)
    conn = Connection(client, peer, probe_topic)
    try:
        for topic in subscribe:
            await conn.subscribe(topic)
        conn.last_rx = time.monotonic()
        yield conn
    finally:
        await conn._close()


def _refused(code: object) -> bool:
    # MQTT 3.1.1 SUBACK: 0x80 is failure; paho 2 gives ReasonCode objects (or ints).
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80
