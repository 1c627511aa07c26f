"""A terminal acts only on resend requests signed by the collector key it pinned (DESIGN 12):
checked like acks, but a request never pins a key."""

from __future__ import annotations

from pathlib import Path

import msgspec
from structlog.testing import capture_logs

from edged.keys import read_pin, write_pin
from edged.signing import Signer, ack_signed_bytes, resend_signed_bytes
from edged.uplink.ackgate import AckGate
from edged.wire import Ack, ResendRequest, Sig

TOPIC = "edged/v1/S1/T1/resend"


def request(signer: Signer | None, seq_from: int, *, terminal: str = "T1") -> ResendRequest:
    bare = ResendRequest(v=1, from_=seq_from, upto=seq_from + 9, reason="gap")
    if signer is None:
        return bare
    return msgspec.structs.replace(bare, sig=signer.sign(resend_signed_bytes("S1", terminal, bare)))


def gate(tmp_path: Path, *, require_signed: bool = True) -> AckGate:
    return AckGate(
        tmp_path / "collector.pub", store="S1", terminal="T1", require_signed=require_signed
    )


def ignored(logs: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["log_level"], e["kind"]) for e in logs if e["event"] == "resend_ignored"]


def test_forged_resend_requests_are_ignored_once_a_key_is_pinned(tmp_path: Path) -> None:
    collector, rogue = Signer.generate(), Signer.generate()
    g = gate(tmp_path, require_signed=False)  # even so: a pinned key decides
    write_pin(g.pin_path, collector.public_hex)
    good = request(collector, 11)
    assert good.sig is not None
    forged = [
        request(None, 1),  # unsigned
        request(rogue, 1),  # another key
        request(collector, 1, terminal="T2"),  # the collector's, for another terminal
        msgspec.structs.replace(good, from_=1),  # the collector's signature, `from` changed
        msgspec.structs.replace(good, sig=Sig("ed25519", collector.public_hex, "00" * 64)),
    ]
    with capture_logs() as logs:
        assert [g.admit_resend(r, TOPIC) for r in forged] == [False] * 5
    assert ignored(logs) == [
        ("error", "unsigned"),
        ("error", "wrong_key"),
        ("error", "bad_signature"),
        ("debug", "bad_signature"),  # each problem said once at ERROR
        ("debug", "bad_signature"),
    ]
    assert logs[0]["seq_from"] == 1 and logs[0]["topic"] == TOPIC
    assert g.admit_resend(good, TOPIC)
    assert read_pin(g.pin_path) == collector.public_hex


def test_a_resend_request_never_pins_a_key(tmp_path: Path) -> None:
    collector = Signer.generate()
    g = gate(tmp_path)
    with capture_logs() as logs:
        assert not g.admit_resend(request(None, 1), TOPIC)
        assert not g.admit_resend(request(collector, 1), TOPIC)
    assert ignored(logs) == [("error", "unsigned"), ("error", "unpinned")]
    assert read_pin(g.pin_path) is None
    ack = Ack(v=1, upto=3, at="2026-12-06T10:00:00.000Z")
    signed_ack = msgspec.structs.replace(ack, sig=collector.sign(ack_signed_bytes("S1", "T1", ack)))
    assert g.admit(signed_ack, "edged/v1/S1/T1/ack")  # the collector's first ack pins its key
    assert g.admit_resend(request(collector, 1), TOPIC)


def test_before_a_pin_requests_count_only_when_unsigned_acks_would(tmp_path: Path) -> None:
    g = gate(tmp_path, require_signed=False)  # an upgraded till, its collector not yet
    assert g.admit_resend(request(None, 1), TOPIC)
    assert g.admit_resend(request(Signer.generate(), 1), TOPIC)
    assert read_pin(g.pin_path) is None


def test_acks_and_resend_requests_are_each_logged_once_per_problem(tmp_path: Path) -> None:
    g = gate(tmp_path)
    with capture_logs() as logs:
        g.admit(Ack(v=1, upto=3), "edged/v1/S1/T1/ack")
        g.admit_resend(request(None, 1), TOPIC)
        g.admit_resend(request(None, 1), TOPIC)
    levels = [(e["event"], e["log_level"]) for e in logs]
    assert levels == [
        ("ack_ignored", "error"),
        ("resend_ignored", "error"),
        ("resend_ignored", "debug"),
    ]


def signed_ack(signer: Signer, upto: int) -> Ack:
    ack = Ack(v=1, upto=upto, at="2026-12-06T10:00:00.000Z")
    return msgspec.structs.replace(ack, sig=signer.sign(ack_signed_bytes("S1", "T1", ack)))


ACK_TOPIC = "edged/v1/S1/T1/ack"


def test_rejections_are_counted_and_name_what_was_rejected(tmp_path: Path) -> None:
    g = gate(tmp_path)
    collector = Signer.generate()
    write_pin(g.pin_path, collector.public_hex)
    assert g.rejected == 0
    with capture_logs() as logs:
        assert g.admit(Ack(v=1, upto=1), ACK_TOPIC) is False
        assert g.admit_resend(request(None, 1), TOPIC) is False
    assert g.rejected == 2
    problems = [e["problem"] for e in logs]
    assert problems == [
        f"unsigned ack, but collector key {collector.public_hex} is pinned",
        f"unsigned resend request, but collector key {collector.public_hex} is pinned",
    ]


def test_a_good_message_makes_the_next_problem_an_error_again(tmp_path: Path) -> None:
    """Said once at ERROR per problem since the last message that was acted on: a signed one
    or, before any pin and where allowed, an unsigned one."""
    collector = Signer.generate()
    forged = msgspec.structs.replace(signed_ack(collector, 2), upto=5)  # a bad signature
    g = gate(tmp_path, require_signed=False)
    with capture_logs() as logs:
        for good in (Ack(v=1, upto=1), signed_ack(collector, 1)):  # unsigned, then signed
            assert g.admit(forged, ACK_TOPIC) is False
            assert g.admit(forged, ACK_TOPIC) is False
            assert g.admit(good, ACK_TOPIC) is True
        assert g.admit(forged, ACK_TOPIC) is False
    levels = [e["log_level"] for e in logs if e["event"] == "ack_ignored"]
    assert levels == ["error", "debug", "error", "debug", "error"]


def test_an_unreadable_or_unwritable_pin_rejects(tmp_path: Path) -> None:
    g = gate(tmp_path)
    g.pin_path.write_text("nonsense")
    collector = Signer.generate()
    with capture_logs() as logs:
        assert g.admit(signed_ack(collector, 1), ACK_TOPIC) is False
    assert [(e["kind"], e["log_level"]) for e in logs] == [("pin_unreadable", "error")]
    g = AckGate(
        tmp_path / "missing" / "collector.pub", store="S1", terminal="T1", require_signed=True
    )
    with capture_logs() as logs:
        assert g.admit(signed_ack(collector, 1), ACK_TOPIC) is False
    assert [(e["kind"], e["log_level"]) for e in logs] == [("pin_unwritable", "error")]
    assert "cannot write" in str(logs[0]["problem"])
    assert read_pin(g.pin_path) is None
