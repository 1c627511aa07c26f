"""The collector's one connection to the broker: the only importer of aiomqtt in the collector.

Incoming QoS 1 messages are acknowledged (PUBACK) by hand, only after the collector's own
commit: a collector that dies before committing gets them again from its persistent session.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.config import UplinkSection, tls_context
from edged.errors import EdgedError

CONNECT_TIMEOUT_S = 10.0
SUBSCRIBE_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
# MQTT v5 (shared groups): how long the broker keeps a collector's session while it is away. A
# member that is away keeps getting its share queued (mosquitto), so keep this modest: once it
# expires, terminals' resends reach the members that are still alive.
SHARED_SESSION_EXPIRY_S = 300
# MQTT v5: how many un-PUBACKed messages the broker may push to us; bounds our inbox.
RECEIVE_MAXIMUM = 100
# aiomqtt warns per call past this many pending calls; acks to many terminals are normal.
PENDING_CALLS_WARNING = 10_000
_SUBACK_FAILURE = 0x80
# CONNACK codes: v3.1.1 bad credentials / not authorised; v5 the same two.
_AUTH_REFUSED = frozenset({4, 5, 0x86, 0x87})


class LinkError(EdgedError):
    """The broker connection failed, was refused, or was lost; reconnect with backoff."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message received; `settle()` it once it is durably handled."""

    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Everything needed to open one connection."""

    uplink: UplinkSection
    client_id: str
    password: str | None
    shared_group: str | None
    source: str  # config file, for error messages


class BrokerLink:
    """One MQTT connection with a persistent session; an async context manager, used once."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        up = settings.uplink
        v5 = settings.shared_group is not None
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SHARED_SESSION_EXPIRY_S
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client = aiomqtt.Client(
            up.host,
            up.effective_port,
            username=up.username,
            password=settings.password,
            identifier=settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            # v3.1.1 takes only the default; v5 must never start clean (keep the session).
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=up.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            tls_context=tls_context(up, settings.source),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client.pending_calls_threshold = PENDING_CALLS_WARNING
        self._shared_available = True  # MQTT v5: absent from the CONNACK means available
        if v5:
            self._watch_connack()
        # PUBACK only after our commit (aiomqtt has no switch for this; paho does).
        self._client._client.manual_ack_set(True)
        self._messages = self._client.messages

    async def __aenter__(self) -> Self:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            hint = ""
            if isinstance(exc, aiomqtt.MqttCodeError) and _code(exc.rc) in _AUTH_REFUSED:
                hint = "; check uplink.username and uplink.password_file"
            raise LinkError(f"cannot connect to {self._where()}: {exc}{hint}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the connection is gone either way
            await self._client.__aexit__(exc_type, exc, tb)

    def _watch_connack(self) -> None:
        """Note the CONNACK's "Shared Subscription Available" before aiomqtt handles it."""
        paho_client = self._client._client
        handler = paho_client.on_connect
        assert handler is not None  # aiomqtt's own, set in its constructor

        def on_connect(*args: Any) -> None:
            properties = args[4] if len(args) > 4 else None
            available = getattr(properties, "SharedSubscriptionAvailable", 1)
            self._shared_available = bool(available)
            handler(*args)

        paho_client.on_connect = on_connect

    @property
    def shared_group(self) -> str | None:
        """The group subscriptions are made in: None when none is configured or the broker
        said (CONNACK) that it offers no shared subscriptions."""
        return self.settings.shared_group if self._shared_available else None

    def _where(self) -> str:
        up = self.settings.uplink
        return f"broker {up.host}:{up.effective_port}"

    async def subscribe(self, topic_filter: str) -> None:
        """Subscribe QoS 1, in the shared group if one is configured and the broker has them."""
        group = self.shared_group
        full = f"$share/{group}/{topic_filter}" if group else topic_filter
        try:
            granted = await self._client.subscribe(full, qos=1, timeout=SUBSCRIBE_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise LinkError(f"cannot subscribe to {full} on {self._where()}: {exc}") from exc
        value = _code(granted[0])
        if value >= _SUBACK_FAILURE:
            raise LinkError(
                f"{self._where()} refused the subscription to {full} (code {value}); "
                "check the broker's ACL for this collector's user"
            )
        if value != 1:
            raise LinkError(
                f"{self._where()} granted QoS {value} for {full}, not 1; entries could be lost"
            )

    async def next(self) -> Delivery:
        """Wait for the next message; raises LinkError when the connection is lost."""
        try:
            message = await anext(self._messages)
        except aiomqtt.MqttError as exc:
            raise LinkError(f"lost {self._where()}: {exc}") from exc
        return _delivery(message)

    def waiting(self) -> int:
        """How many messages are already received and waiting."""
        return len(self._messages)

    def settle(self, delivery: Delivery) -> None:
        """PUBACK a message: the broker may now forget it."""
        if delivery.qos == 0:
            return
        rc = self._client._client.ack(delivery.mid, delivery.qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise LinkError(f"lost {self._where()} while acknowledging (paho rc {rc})")

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish QoS 1 and wait for the broker's PUBACK."""
        try:
            await self._client.publish(
                topic, payload, qos=1, retain=retain, timeout=PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as exc:
            raise LinkError(f"cannot publish to {topic} on {self._where()}: {exc}") from exc


def _code(rc: object) -> int:
    """The number of a paho reason code, whether paho gave an int or a ReasonCode."""
    if isinstance(rc, int):
        return rc
    value = getattr(rc, "value", -1)
    return value if isinstance(value, int) else -1


def _delivery(message: aiomqtt.Message) -> Delivery:
    payload = message.payload
    data = payload if isinstance(payload, bytes) else str(payload).encode()
    return Delivery(str(message.topic), data, message.mid, message.qos)
