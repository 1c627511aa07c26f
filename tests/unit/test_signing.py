"""The bytes each signature covers (README Contracts) and the checks on both ends."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edged.errors import KeyFileError
from edged.keys import load_or_create, read_pin, write_pin
from edged.signing import (
    Signer,
    ack_signed_bytes,
    check_key_hex,
    resend_signed_bytes,
    tx_signed_bytes,
    verify,
)
from edged.wire import Ack, ResendRequest, Sig, TxBatch, decode_resend, decode_tx, encode

H1, H2 = "ab" * 32, "cd" * 32


def test_tx_signed_bytes_are_the_documented_json_array() -> None:
    assert tx_signed_bytes("S1", "T1", [(1, H1), (2, H2)]) == (
        f'["edged-tx-v1","S1","T1",[[1,"{H1}"],[2,"{H2}"]]]'.encode()
    )


def test_ack_signed_bytes_are_the_documented_json_array() -> None:
    ack = Ack(v=1, upto=38, at="2026-12-01T10:00:00.000Z", last_seq=40, last_hash=H1)
    assert ack_signed_bytes("S1", "T1", ack) == (
        f'["edged-ack-v1","S1","T1",1,38,40,"{H1}","2026-12-01T10:00:00.000Z"]'.encode()
    )
    bare = ack_signed_bytes("S1", "T1", Ack(v=1, upto=3))
    assert bare == b'["edged-ack-v1","S1","T1",1,3,null,null,null]'


def test_resend_signed_bytes_are_the_documented_json_array() -> None:
    request = ResendRequest(v=1, from_=51, upto=150, reason="database restored")
    assert resend_signed_bytes("S1", "T1", request) == (
        b'["edged-resend-v1","S1","T1",1,51,150,"database restored"]'
    )
    bare = resend_signed_bytes("S1", "T1", ResendRequest(v=1, from_=7))
    assert bare == b'["edged-resend-v1","S1","T1",1,7,null,""]'


def test_a_signed_resend_request_round_trips_and_an_unsigned_one_is_as_before() -> None:
    request = ResendRequest(v=1, from_=7)
    assert encode(request) == b'{"v":1,"from":7}'
    sig = Signer.generate().sign(resend_signed_bytes("S1", "T1", request))
    assert decode_resend(encode(ResendRequest(v=1, from_=7, sig=sig))).sig == sig


def test_a_signature_verifies_and_any_change_breaks_it() -> None:
    signer = Signer.generate()
    message = tx_signed_bytes("S1", "T1", [(1, H1)])
    sig = signer.sign(message)
    assert (sig.alg, sig.key, len(sig.value)) == ("ed25519", signer.public_hex, 128)
    assert verify(sig, message) is None
    assert verify(sig, tx_signed_bytes("S1", "T1", [(1, H2)])) == "signature does not verify"
    assert verify(sig, tx_signed_bytes("S1", "T2", [(1, H1)])) == "signature does not verify"
    other = Signer.generate().public_hex
    assert verify(Sig("ed25519", other, sig.value), message) == "signature does not verify"
    assert "unsupported" in (verify(Sig("rsa", sig.key, sig.value), message) or "")
    assert "malformed" in (verify(Sig("ed25519", "zz", sig.value), message) or "")


def test_the_same_seed_signs_the_same_in_any_implementation() -> None:
    """RFC 8032 test vector 1: another implementation can check our signatures."""
    pem = (
        b"-----BEGIN PRIVATE KEY-----\n"
        b"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
        b"-----END PRIVATE KEY-----\n"
    )
    signer = Signer.from_pem(pem)
    assert signer.public_hex == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert signer.sign(b"").value.startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974")


def test_an_unsigned_batch_encodes_as_before_and_a_signed_one_round_trips() -> None:
    batch = TxBatch(v=1, store="S1", terminal="T1", entries=[])
    assert encode(batch) == b'{"v":1,"store":"S1","terminal":"T1","entries":[]}'
    sig = Signer.generate().sign(b"x")
    signed = TxBatch(v=1, store="S1", terminal="T1", entries=[], sig=sig)
    assert decode_tx(encode(signed)).sig == sig


def test_the_key_is_made_once_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "terminal.key"
    first = load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create(path).public_hex == first.public_hex
    assert [p.name for p in tmp_path.iterdir()] == ["terminal.key"]  # no temporary left


def test_a_damaged_key_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "terminal.key"
    path.write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match="damaged.*re-pin"):
        load_or_create(path)


def test_a_pin_is_hex_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "collector.pub"
    assert read_pin(path) is None
    key = Signer.generate().public_hex
    write_pin(path, key.upper())
    assert read_pin(path) == key
    with pytest.raises(ValueError, match="64 hex digits"):
        write_pin(path, "abc")
    path.write_text("nonsense")
    with pytest.raises(KeyFileError, match="pin-collector"):
        read_pin(path)


def test_each_bad_signature_says_its_problem() -> None:
    signer = Signer.generate()
    message = tx_signed_bytes("S1", "T1", [(1, H1)])
    sig = signer.sign(message)
    assert verify(Sig("ed25519", sig.key, sig.value[:-2]), message) == (
        "signature is 63 bytes, not 64"
    )
    assert verify(Sig("ed25519", sig.key, sig.value + "00"), message) == (
        "signature is 65 bytes, not 64"
    )
    assert verify(Sig("Ed25519", sig.key, sig.value), message) == (
        "unsupported signature algorithm 'Ed25519' (only 'ed25519')"
    )
    assert (verify(Sig("ed25519", sig.key, "xyz"), message) or "").startswith(
        "malformed key or signature: "
    )
    assert (verify(Sig("ed25519", sig.key[:-2], sig.value), message) or "").startswith(
        "malformed key or signature: "
    )


def test_a_public_key_is_64_hex_digits() -> None:
    key = Signer.generate().public_hex
    assert check_key_hex(f" {key.upper()}\n") == key
    for bad in (key[:-1], key + "0", "g" + key[1:], ""):
        with pytest.raises(ValueError, match=r"an Ed25519 public key is 64 hex digits, got"):
            check_key_hex(bad)
