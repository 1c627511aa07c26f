"""Forged acks and resend requests against a live `edged run` on an anonymous broker (DESIGN 12).

A second client publishes what a rogue on the store LAN could: acks far ahead and resend
requests, unsigned, signed by its own key, or carrying the collector's key with a signature
that does not match. The till acts on none of them; the store's genuine ack still counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import msgspec

from edged.keys import collector_key_path, read_public
from edged.signing import Signer, ack_signed_bytes, resend_signed_bytes
from edged.wire import Ack, ResendRequest, Sig, Topics, TxBatch, encode
from tests.integration.test_trust_no_one import acked, commit, log_events, status, stop
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until, until_awaited

AHEAD = 10_000  # a forged ack claims this many seqs past the store
FORGED_KINDS = ["bad_signature", "unsigned", "wrong_key"]


def forged_ack(upto: int, how: str, rogue: Signer, collector_key: str) -> bytes:
    ack = Ack(v=1, upto=upto, at="2026-12-01T10:00:00.000Z", last_seq=upto, last_hash="ab" * 32)
    signed = rogue.sign(ack_signed_bytes("S1", "T1", ack))
    sig = {
        "unsigned": None,
        "wrong_key": signed,
        "bad_signature": Sig("ed25519", collector_key, signed.value),
    }[how]
    return encode(msgspec.structs.replace(ack, sig=sig))


def forged_resend(how: str, rogue: Signer, collector_key: str) -> bytes:
    request = ResendRequest(v=1, from_=1, reason="forged")
    signed = rogue.sign(resend_signed_bytes("S1", "T1", request))
    sig = {
        "unsigned": None,
        "wrong_key": signed,
        "bad_signature": Sig("ed25519", collector_key, signed.value),
    }[how]
    return encode(msgspec.structs.replace(request, sig=sig))


def kinds(log: Path, event: str) -> list[str]:
    return sorted({str(e["kind"]) for e in log_events(log, event)})


async def test_a_live_till_acts_on_no_forged_ack_or_resend_request(
    broker: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("edged/v1", "S1", "T1")
    collector = CollectorProcess(tmp_path / "store", uplink_section(broker.port))
    till = DaemonProcess(tmp_path / "till", uplink=uplink_section(broker.port, ack_timeout_s=1))
    collector.start()
    till.start()
    seen: list[TxBatch] = []
    answers: list[bytes] = []
    try:
        await commit(till.socket, 3)
        await until_awaited(lambda: acked(till, 3), "the till acknowledged, the key pinned")
        collector_key = read_public(collector_key_path(collector.db))
        assert collector_key is not None
        collector.terminate()  # the store holds 1..3; 4 and 5 stay pending at the till
        await commit(till.socket, 2)
        rogue = Signer.generate()
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="rogue") as client:
            await client.subscribe(topics.tx, qos=1)
            await client.subscribe(topics.resend_answer, qos=1)

            async def spy() -> None:
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    if str(message.topic) == topics.tx:
                        seen.append(msgspec.json.decode(message.payload, type=TxBatch))
                    else:
                        answers.append(message.payload)

            spying = asyncio.create_task(spy(), name="spy")
            try:
                for how in FORGED_KINDS:
                    for upto, retain in ((4, False), (5, True), (3 + AHEAD, False)):
                        payload = forged_ack(upto, how, rogue, collector_key)
                        await client.publish(topics.ack, payload, qos=1, retain=retain)
                    resend = forged_resend(how, rogue, collector_key)
                    await client.publish(topics.resend, resend, qos=1)
                await until(lambda: kinds(till.log, "ack_ignored") == FORGED_KINDS)
                await until(lambda: kinds(till.log, "resend_ignored") == FORGED_KINDS)
                await until(lambda: len(seen) >= 2, "the till's tail sent twice (ack timeout)")
                assert (await status(till.socket))["outbox"]["acked_upto"] == 3
                for event in ("ack_ignored", "resend_ignored"):
                    assert {e["level"] for e in log_events(till.log, event)} == {"error"}
            finally:
                spying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await spying
        sent = sorted({e.seq for batch in seen for e in batch.entries})
        assert sent == [4, 5]  # the tail only: nothing resent for a forged request
        assert answers == []  # and no answer to one
        collector.start()  # the genuine ack (republished over the forged retained one) counts
        await until_awaited(lambda: acked(till, 5), "the genuine ack after the forgeries")
        found = await status(till.socket)
    finally:
        stop(till, collector)
    assert found["outbox"]["pending"] == 0
