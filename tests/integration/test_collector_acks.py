"""Acks are retained and carry the store's clock and high-water mark (design rule 1).

A terminal that subscribes (first contact, or after it lost its journal's tail) learns at once
what the store holds for it, without sending anything.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from pathlib import Path

import aiomqtt

from edged.signing import Signer
from edged.wire import Ack, Topics, decode_ack
from tests.integration.test_collector import PREFIX, S, Terminal, config, make_chain, running
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import WAIT_S, until


async def retained_ack(port: int, terminal: str) -> Ack:
    """The ack a fresh subscriber is handed on subscribing: the broker's retained message."""
    topic = Topics(PREFIX, S, terminal).ack
    client = aiomqtt.Client("127.0.0.1", port, identifier=f"fresh-{uuid.uuid4().hex[:6]}")
    async with client, asyncio.timeout(WAIT_S):
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            assert message.retain, "the ack must be a retained message"
            assert isinstance(message.payload, bytes)
            return decode_ack(message.payload)
    raise AssertionError("no ack")


async def test_a_fresh_subscriber_gets_the_last_ack_with_the_stores_view(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = config(tmp_path, broker.port, client_id="c1")
    chain = make_chain("t1", 5)
    signer = Signer.generate()
    async with running(cfg), Terminal(broker.port, "t1", signer=signer) as term:
        await term.publish(chain[:3])
        await term.wait_ack(3)
        await term.publish(chain[4:])  # seq 4 missing: the store holds 5 past a gap
        await until(lambda: len(term.acks) == 2, "second ack")
    ack = await retained_ack(broker.port, "t1")  # the collector may even be gone by now
    assert (ack.v, ack.upto, ack.last_seq, ack.last_hash) == (1, 3, 5, chain[4].hash)
    assert ack.at is not None
    assert ack.at.endswith("Z")
    at = datetime.datetime.fromisoformat(ack.at)
    assert at.utcoffset() == datetime.timedelta(0)
    assert len(ack.at) == len("2026-11-23T09:41:00.123Z")  # RFC 3339, milliseconds


async def test_a_terminal_without_a_key_gets_the_v1_ack(broker: Mosquitto, tmp_path: Path) -> None:
    """An edged from before signatures decodes `{v, upto}` only (it refuses unknown fields):
    upgrading the collector first must not stop its acknowledgements."""
    cfg = config(tmp_path, broker.port, client_id="c1")
    chain = make_chain("t1", 2)
    payloads: list[bytes] = []
    async with running(cfg), Terminal(broker.port, "t1") as term:
        term.on_payload = payloads.append
        await term.publish(chain)
        await term.wait_ack(2)
    assert payloads[-1] == b'{"v":1,"upto":2}'
