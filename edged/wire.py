"""MQTT topics and payloads shared by the terminal and the collector (contract v1)."""

from __future__ import annotations

from typing import Annotated, Protocol, TypeVar

import msgspec

T = TypeVar("T")

WIRE_VERSION = 1
DEFAULT_TOPIC_PREFIX = "edged/v1"
SEQ_MAX = 2**63 - 1  # a seq out of 1..SEQ_MAX fails decoding (SQLite's INTEGER is 64-bit)


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One journal entry as forwarded; hashes are lowercase hex."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)]
    id: str
    receipt_no: str
    created_at: str
    prev_hash: str
    hash: str
    sale: msgspec.Raw  # the sale's JSON as sent; the collector re-canonicalizes it


class Sig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An Ed25519 signature (README Contracts: the bytes each message signs); lowercase hex."""

    alg: str  # "ed25519"
    key: str  # the signer's public key, 32 bytes
    value: str  # the signature, 64 bytes


class TxBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """terminal -> store on `{prefix}/{store}/{terminal}/tx`, QoS 1; signed by the terminal."""

    v: int
    store: str
    terminal: str
    entries: list[Entry]
    sig: Sig | None = None


class Ack(msgspec.Struct, frozen=True, omit_defaults=True):
    """store -> terminal on `{prefix}/{store}/{terminal}/ack`, retained: every seq <= upto is
    stored. Unknown fields are ignored, so that later collectors can tell terminals more.

    `at` is the store's clock when it sent the ack (RFC 3339 UTC, milliseconds): the terminal
    compares its own clock with it. `last_seq`/`last_hash` are the highest seq the store holds
    for this terminal (>= upto, past a gap) and its hash: a terminal whose journal is behind
    them lost its tail, and continues past them (DESIGN invariant 11).
    """

    v: int
    upto: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
    at: str | None = None
    last_seq: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)] | None = None
    last_hash: str | None = None
    sig: Sig | None = None  # the collector's signature


class Status(msgspec.Struct, frozen=True, omit_defaults=True):
    """terminal -> store on `{prefix}/{store}/{terminal}/status`, retained; also the Last Will."""

    v: int
    state: str
    since: str
    pending: int | None = None
    version: str | None = None


class ResendRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """store -> terminal on `{prefix}/{store}/{terminal}/resend`, QoS 1, not retained: send
    your journal again from seq `from` (to `upto`, or to your last seq), acknowledged entries
    included. Sent when the store lacks those seqs (a gap, or a database lost or restored)."""

    v: int
    from_: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)] = msgspec.field(name="from")
    upto: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)] | None = None
    reason: str = ""
    sig: Sig | None = None  # the collector's signature, checked like an ack's


class ResendAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """terminal -> store on `{prefix}/{store}/{terminal}/resend_answer`, QoS 1, not retained:
    the answer to a ResendRequest. The terminal sends from max(`from`, `retained_from`); seqs
    `from`..`retained_from`-1 are purged from its journal and can never be sent (a permanent
    gap at the store). `last_seq` is its journal's last seq."""

    v: int
    from_: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)] = msgspec.field(name="from")
    upto: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)] | None = None
    retained_from: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)] = 1
    last_seq: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)] = 0


class Topics:
    """Topic names of one terminal under a prefix."""

    def __init__(self, prefix: str, store: str, terminal: str) -> None:
        base = f"{prefix}/{store}/{terminal}"
        self.tx = f"{base}/tx"
        self.ack = f"{base}/ack"
        self.status = f"{base}/status"
        self.resend = f"{base}/resend"
        self.resend_answer = f"{base}/resend_answer"


def tx_filter(prefix: str) -> str:
    """Subscription filter matching every terminal's tx topic."""
    return f"{prefix}/+/+/tx"


def resend_answer_filter(prefix: str) -> str:
    """Subscription filter matching every terminal's resend answers."""
    return f"{prefix}/+/+/resend_answer"


def parse_tx_topic(prefix: str, topic: str, kind: str = "tx") -> tuple[str, str] | None:
    """(store, terminal) of a `kind` topic (tx, resend_answer) under `prefix`, or None."""
    head, tail = prefix + "/", "/" + kind
    if not topic.startswith(head) or not topic.endswith(tail):
        return None
    parts = topic[len(head) : -len(tail)].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def _decode(payload: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(payload, type=kind)
    except RecursionError:  # msgspec gives up on absurdly deep JSON this way
        raise msgspec.DecodeError("JSON nested too deeply") from None


class _Versioned(Protocol):
    @property
    def v(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def _decode_v1(payload: bytes, kind: type[V]) -> V:
    """Decode a payload of this wire version; raises msgspec.ValidationError/DecodeError
    naming the JSON path."""
    message = _decode(payload, kind)
    if message.v != WIRE_VERSION:
        raise msgspec.ValidationError(f"unsupported version {message.v} - at `$.v`")
    return message


def decode_tx(payload: bytes) -> TxBatch:
    return _decode_v1(payload, TxBatch)


def decode_ack(payload: bytes) -> Ack:
    return _decode_v1(payload, Ack)


def decode_resend(payload: bytes) -> ResendRequest:
    return _decode_v1(payload, ResendRequest)


def decode_resend_answer(payload: bytes) -> ResendAnswer:
    return _decode_v1(payload, ResendAnswer)
