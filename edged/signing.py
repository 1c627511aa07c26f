"""Ed25519 signatures over the exact bytes that the Contracts section of the README defines.

A tx batch is signed over `["edged-tx-v1", store, terminal, [[seq, hash], ...]]`, an ack
over `["edged-ack-v1", store, terminal, v, upto, last_seq, last_hash, at]` and a resend request
over `["edged-resend-v1", store, terminal, v, from, upto, reason]`, each as compact JSON
(UTF-8; ids are [A-Za-z0-9_-], hashes lowercase hex). The entry hashes chain over every
entry's content, so one signature covers the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edged import pkcs8
from edged.wire import Ack, ResendRequest, Sig

ALG = "ed25519"
KEY_HEX_CHARS = 64
SIG_HEX_CHARS = 128
TX_DOMAIN = "edged-tx-v1"
ACK_DOMAIN = "edged-ack-v1"
RESEND_DOMAIN = "edged-resend-v1"


def tx_signed_bytes(store: str, terminal: str, entries: Iterable[tuple[int, str]]) -> bytes:
    """The bytes a tx batch's signature covers: store, terminal, each entry's seq and hash."""
    return msgspec.json.encode([TX_DOMAIN, store, terminal, [[s, h] for s, h in entries]])


def ack_signed_bytes(store: str, terminal: str, ack: Ack) -> bytes:
    """The bytes an ack's signature covers (absent optional fields are null)."""
    return msgspec.json.encode(
        [ACK_DOMAIN, store, terminal, ack.v, ack.upto, ack.last_seq, ack.last_hash, ack.at]
    )


def resend_signed_bytes(store: str, terminal: str, request: ResendRequest) -> bytes:
    """The bytes a resend request's signature covers (an absent `upto` is null)."""
    return msgspec.json.encode(
        [RESEND_DOMAIN, store, terminal, request.v, request.from_, request.upto, request.reason]
    )


class Signer:
    """One Ed25519 private key (libsodium through PyNaCl); its public key is `public_hex`."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.public_hex = key.verify_key.encode().hex()

    @classmethod
    def generate(cls) -> Signer:
        return cls(SigningKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        """Load a PKCS#8 PEM Ed25519 key (RFC 8410); ValueError if it is not one."""
        return cls(SigningKey(pkcs8.decode(pem)))

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (`openssl pkey` reads it)."""
        return pkcs8.encode(self._key.encode())

    def sign(self, message: bytes) -> Sig:
        return Sig(alg=ALG, key=self.public_hex, value=self._key.sign(message).signature.hex())


def check_key_hex(text: str) -> str:
    """A public key as 64 lowercase hex digits; ValueError naming the problem otherwise."""
    key = text.strip().lower()
    if len(key) != KEY_HEX_CHARS or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(
            f"an Ed25519 public key is {KEY_HEX_CHARS} hex digits, got {text.strip()!r}"
        )
    return key


def verify(sig: Sig, message: bytes) -> str | None:
    """None if `sig` is a valid Ed25519 signature of `message` by `sig.key`, else the problem."""
    if sig.alg != ALG:
        return f"unsupported signature algorithm {sig.alg!r} (only {ALG!r})"
    try:
        key = VerifyKey(bytes.fromhex(sig.key))
        value = bytes.fromhex(sig.value)
    except ValueError as exc:
        return f"malformed key or signature: {exc}"
    if len(value) != SIG_HEX_CHARS // 2:
        return f"signature is {len(value)} bytes, not 64"
    try:
        key.verify(message, value)
    except BadSignatureError:
        return "signature does not verify"
    return None
