"""Key files stay compatible across the switch to PyNaCl: with `openssl` and with keys that the
`cryptography` package wrote (README: Keys; `openssl pkey -in terminal.key -pubout` works)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edged import pkcs8
from edged.keys import load_or_create
from edged.signing import Signer, tx_signed_bytes, verify
from edged.wire import Sig

# Made by cryptography 51 (Ed25519PrivateKey.generate(), PKCS8 PEM, NoEncryption) before
# edged dropped it, with its public key and its signature of MESSAGE.
CRYPTOGRAPHY_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIEF25igDPGVblc8qipvi4o/jX+1DjjmkKB2YujyCOzwG\n"
    b"-----END PRIVATE KEY-----\n"
)
CRYPTOGRAPHY_PUBLIC = "7c81324b71a8091a435423981a9a3a68e1f80a21748a87e9f0ebbf7c36ded4e7"
MESSAGE = tx_signed_bytes("S1", "T1", [(1, "ab" * 32)])
CRYPTOGRAPHY_SIG = (
    "7055f79c0ddd7d1553d1187c20e0f2f2a23c33bdb78d43c526c8cb62be19ce5a"
    "512ae825bc1090f4f13e5d01fb286aac7627cff678925ab306ab9de97ebba909"
)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


def openssl(*args: str, data: bytes = b"") -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def openssl_public_hex(key_file: Path) -> str:
    der = openssl("pkey", "-in", str(key_file), "-pubout", "-outform", "DER")
    return der[-32:].hex()  # SubjectPublicKeyInfo: a 12-byte header, then the raw key


def test_a_key_cryptography_wrote_loads_and_signs_the_same() -> None:
    signer = Signer.from_pem(CRYPTOGRAPHY_PEM)
    assert signer.public_hex == CRYPTOGRAPHY_PUBLIC
    assert signer.sign(MESSAGE).value == CRYPTOGRAPHY_SIG
    assert verify(Sig("ed25519", CRYPTOGRAPHY_PUBLIC, CRYPTOGRAPHY_SIG), MESSAGE) is None


def test_a_key_is_written_byte_for_byte_as_cryptography_wrote_it() -> None:
    assert Signer.from_pem(CRYPTOGRAPHY_PEM).pem() == CRYPTOGRAPHY_PEM


@needs_openssl
def test_openssl_reads_a_new_key_and_signs_as_edged_does(tmp_path: Path) -> None:
    key_file = tmp_path / "terminal.key"
    signer = load_or_create(key_file)
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert openssl_public_hex(key_file) == signer.public_hex
    (tmp_path / "message").write_bytes(MESSAGE)
    sig = openssl(
        "pkeyutl", "-sign", "-rawin", "-inkey", str(key_file), "-in", str(tmp_path / "message")
    )
    assert sig.hex() == signer.sign(MESSAGE).value


@needs_openssl
def test_a_key_openssl_made_loads_and_openssl_verifies_its_signatures(tmp_path: Path) -> None:
    key_file = tmp_path / "collector.key"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(key_file))
    signer = load_or_create(key_file)
    assert signer.public_hex == openssl_public_hex(key_file)
    (tmp_path / "pub.pem").write_bytes(openssl("pkey", "-in", str(key_file), "-pubout"))
    (tmp_path / "message").write_bytes(MESSAGE)
    (tmp_path / "sig").write_bytes(bytes.fromhex(signer.sign(MESSAGE).value))
    out = openssl(
        "pkeyutl",
        "-verify",
        "-rawin",
        "-pubin",
        "-inkey",
        str(tmp_path / "pub.pem"),
        "-in",
        str(tmp_path / "message"),
        "-sigfile",
        str(tmp_path / "sig"),
    )
    assert b"Verified Successfully" in out


@pytest.mark.parametrize(
    ("pem", "problem"),
    [
        (b"", "no PEM block"),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "'RSA PRIVATE KEY'",
        ),
        (b"-----BEGIN PRIVATE KEY-----\nMC4*\n-----END PRIVATE KEY-----\n", "base64"),
        # An X25519 key: the same shape, another algorithm (OID 1.3.101.110).
        (
            CRYPTOGRAPHY_PEM.replace(b"K2Vw", b"K2Vu"),
            "RFC 8410",
        ),
    ],
)
def test_anything_else_is_refused_with_what_it_is(pem: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        pkcs8.decode(pem)
