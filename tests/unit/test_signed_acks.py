"""A terminal acts only on acks signed by the collector key it pinned (DESIGN 12)."""

from __future__ import annotations

from pathlib import Path

import msgspec
from structlog.testing import capture_logs

from edged.journal import Journal
from edged.keys import collector_pin_path, read_pin, write_pin
from edged.signing import Signer, ack_signed_bytes
from edged.wire import Ack, Sig, encode
from tests.support.forwarding import bare_forwarder
from tests.support.sales import cash_sale

TOPIC = "edged/v1/S1/T1/ack"


def signed(signer: Signer, upto: int, *, store: str = "S1", terminal: str = "T1") -> bytes:
    ack = Ack(v=1, upto=upto, at="2026-12-06T10:00:00.000Z")
    sig = signer.sign(ack_signed_bytes(store, terminal, ack))
    return encode(msgspec.structs.replace(ack, sig=sig))


async def journal_with_sales(tmp_path: Path, n: int) -> Journal:
    j = await Journal.open(tmp_path / "j.db", store_id="S1", terminal_id="T1")
    for _ in range(n):
        await j.commit(cash_sale())
    return j


async def test_forged_acks_change_nothing_once_a_key_is_pinned(tmp_path: Path) -> None:
    j = await journal_with_sales(tmp_path, 5)
    collector, rogue = Signer.generate(), Signer.generate()
    write_pin(collector_pin_path(j.path), collector.public_hex)
    fwd = bare_forwarder(j, require_signed=True)
    good = msgspec.json.decode(signed(collector, 2), type=Ack)
    assert good.sig is not None
    tampered = msgspec.structs.replace(good, upto=5)  # the collector's signature, upto changed
    wrong_sig = msgspec.structs.replace(good, sig=Sig("ed25519", collector.public_hex, "00" * 64))
    with capture_logs() as logs:
        for payload in (
            b'{"v":1,"upto":5}',  # unsigned
            signed(rogue, 5),  # another key
            signed(collector, 5, terminal="T2"),  # the collector's, for another terminal
            encode(tampered),
            encode(wrong_sig),
        ):
            await fwd.handle_ack(TOPIC, payload)
            assert j.stats().acked_upto == 0
    kinds = [(e["log_level"], e["kind"]) for e in logs if e["event"] == "ack_ignored"]
    assert kinds == [
        ("error", "unsigned"),
        ("error", "wrong_key"),
        ("error", "bad_signature"),
        ("debug", "bad_signature"),  # each problem said once at ERROR
        ("debug", "bad_signature"),
    ]
    await fwd.handle_ack(TOPIC, signed(collector, 2))
    assert j.stats().acked_upto == 2
    await j.close()


async def test_the_first_signed_ack_pins_the_collector_key(tmp_path: Path) -> None:
    j = await journal_with_sales(tmp_path, 3)
    collector, rogue = Signer.generate(), Signer.generate()
    fwd = bare_forwarder(j, require_signed=True)
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')  # no pin: unsigned still ignored
    assert j.stats().acked_upto == 0
    await fwd.handle_ack(TOPIC, signed(collector, 1))
    assert (j.stats().acked_upto, read_pin(collector_pin_path(j.path))) == (1, collector.public_hex)
    await fwd.handle_ack(TOPIC, signed(rogue, 3))
    assert j.stats().acked_upto == 1
    await j.close()


async def test_unsigned_acks_count_before_a_pin_only_when_allowed(tmp_path: Path) -> None:
    j = await journal_with_sales(tmp_path, 3)
    fwd = bare_forwarder(j, require_signed=False)  # an upgraded till, its collector not yet
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":1}')
    assert j.stats().acked_upto == 1
    collector = Signer.generate()
    await fwd.handle_ack(TOPIC, signed(collector, 2))  # the collector upgraded: pinned now
    await fwd.handle_ack(TOPIC, b'{"v":1,"upto":3}')
    assert j.stats().acked_upto == 2
    await j.close()


async def test_a_re_pinned_collector_key_is_followed_at_once(tmp_path: Path) -> None:
    j = await journal_with_sales(tmp_path, 3)
    old, new = Signer.generate(), Signer.generate()
    write_pin(collector_pin_path(j.path), old.public_hex)
    fwd = bare_forwarder(j, require_signed=True)
    await fwd.handle_ack(TOPIC, signed(new, 2))
    assert j.stats().acked_upto == 0
    write_pin(collector_pin_path(j.path), new.public_hex)  # edgectl keys pin-collector
    await fwd.handle_ack(TOPIC, signed(new, 2))
    assert j.stats().acked_upto == 2
    await j.close()
