"""Ed25519 private keys as unencrypted PKCS#8 PEM (RFC 8410): the key files' format.

This is the form `openssl genpkey -algorithm ed25519` and the `cryptography` package write:
a fixed 16-byte DER prefix followed by the 32-byte seed, base64 on one line between the
`PRIVATE KEY` armour lines. Any other key is refused with a ValueError that says what it is.
"""

from __future__ import annotations

import base64
import binascii
import re

SEED_BYTES = 32
# SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }
DER_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
BEGIN = b"-----BEGIN PRIVATE KEY-----"
END = b"-----END PRIVATE KEY-----"
_ARMOUR = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def encode(seed: bytes) -> bytes:
    """The PEM file for the key with this 32-byte seed."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, not {len(seed)}")
    return BEGIN + b"\n" + base64.b64encode(DER_PREFIX + seed) + b"\n" + END + b"\n"


def decode(pem: bytes) -> bytes:
    """The 32-byte seed of the first PEM block of `pem`; ValueError naming what is wrong."""
    found = _ARMOUR.search(pem)
    if found is None:
        raise ValueError("no PEM block (-----BEGIN PRIVATE KEY-----) found")
    label = found.group(1).decode()
    if label == "ENCRYPTED PRIVATE KEY":
        raise ValueError("the key is encrypted; edged needs it unencrypted")
    if label != "PRIVATE KEY":
        raise ValueError(f"not an Ed25519 key but a {label!r} PEM block")
    try:
        der = base64.b64decode(b"".join(found.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the PEM block is not valid base64: {exc}") from exc
    if len(der) != len(DER_PREFIX) + SEED_BYTES or not der.startswith(DER_PREFIX):
        raise ValueError("not an Ed25519 key in the PKCS#8 form of RFC 8410")
    return der[len(DER_PREFIX) :]
