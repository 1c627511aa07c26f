"""Tills at their store broker, collectors at a chain broker, the README's mosquitto bridge
between them: sales cross it and come back acknowledged, through an outage of the link too."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from tests.support.daemon import CollectorProcess, uplink_section
from tests.support.faultproxy import FaultProxy
from tests.support.fleet import Fleet, uplink_settings
from tests.support.mosquitto import Mosquitto
from tests.support.readme_broker import bridge_conf

TERMINALS = 8
RATE_PER_S = 40.0
OUTAGE_S = 4.0
DRAIN_S = 60.0
STATUS_FILTER = "edged/v1/s1/+/status"


async def statuses(port: int) -> dict[str, str]:
    """The retained status of every till the broker at `port` holds: terminal -> state."""
    found: dict[str, str] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"look-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(STATUS_FILTER, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in c.messages:
                    assert isinstance(message.payload, bytes)
                    state = msgspec.json.decode(message.payload)["state"]
                    found[str(message.topic).split("/")[3]] = state
    return found


async def retained_acks(port: int) -> dict[str, int]:
    """The `upto` of every till's retained ack at the broker at `port`: terminal -> upto."""
    found: dict[str, int] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"look-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe("edged/v1/s1/+/ack", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in c.messages:
                    assert isinstance(message.payload, bytes) and message.retain
                    upto = msgspec.json.decode(message.payload)["upto"]
                    found[str(message.topic).split("/")[3]] = upto
    return found


async def until_statuses(port: int, ids: list[str], state: str) -> None:
    """Wait until the broker at `port` holds `state` as every till's retained status."""
    wanted = dict.fromkeys(ids, state)
    async with asyncio.timeout(DRAIN_S):
        while await statuses(port) != wanted:
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("outage", ["bridge_cut", "chain_broker_restarted"])
async def test_sales_cross_the_bridge_through_an_outage_of_it(tmp_path: Path, outage: str) -> None:
    (tmp_path / "chain").mkdir()
    (tmp_path / "store").mkdir()
    chain = Mosquitto(tmp_path / "chain")
    chain.start()
    collectors: list[CollectorProcess] = []
    try:
        async with FaultProxy(chain.port) as link:
            store = Mosquitto(tmp_path / "store", extra_conf=bridge_conf(f"127.0.0.1:{link.port}"))
            store.start()
            try:
                db = str(tmp_path / "chain.db")
                uplink = uplink_section(chain.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
                for n in range(2):
                    collectors.append(CollectorProcess(tmp_path / f"collector-{n}", uplink, db=db))
                    collectors[-1].start()
                cfg = uplink_settings("127.0.0.1", store.port, ack_timeout_s=2.0)
                async with Fleet(tmp_path / "fleet", cfg, TERMINALS, seed=3) as fleet:
                    await fleet.sell(RATE_PER_S, 2.0)
                    assert await fleet.drain(DRAIN_S), "not acknowledged across the bridge"
                    await until_statuses(chain.port, fleet.ids, "online")
                    if outage == "bridge_cut":
                        await link.set_mode("reset")  # the link drops; reconnects fail too
                    else:
                        chain.stop()
                    await fleet.sell(RATE_PER_S, OUTAGE_S)  # the tills sell on meanwhile
                    assert fleet.pending > 0  # nothing could be acknowledged
                    if outage == "bridge_cut":
                        await link.set_mode("pass")
                    else:
                        chain.start()
                    await fleet.sell(RATE_PER_S, 2.0)
                    drained = await fleet.drain(DRAIN_S)
                    verdict = fleet.check(db)
                    assert drained, f"{fleet.pending} sales unacknowledged after the outage"
                    assert verdict.ok, "\n".join(verdict.problems)
                    assert verdict.stored_once == verdict.committed
                    # Presence crossed the bridge again after the outage (a restarted chain
                    # broker gets the retained statuses when the bridge reconnects).
                    await until_statuses(chain.port, fleet.ids, "online")
                    # Acks come back retained: the store broker holds each till's latest one.
                    assert await retained_acks(store.port) == {
                        m.terminal: m.journal.stats().acked_upto for m in fleet.members
                    }
                # Each till said `offline` as it stopped: the chain broker learns it too.
                await until_statuses(chain.port, fleet.ids, "offline")
            finally:
                store.stop()
    finally:
        for collector in collectors:
            collector.kill()
        chain.stop()
