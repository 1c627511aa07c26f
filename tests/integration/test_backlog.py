"""The outbox severity (ok/warn/alarm) of a real daemon: status, events, and doctor agreeing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from edged.client import ApiClient
from tests.integration.test_doctor_checks import (
    FAST_LINK,
    _journal_with_unsent,
    _stamp,
    checks,
    doctor,
    link_state,
)
from tests.integration.test_edgectl import edgectl
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.sales import cash_sale

WAIT_S = 20.0


async def next_outbox(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        event = await anext(events)
    assert event["type"] == "outbox"
    data: dict[str, Any] = event["data"]
    return data


async def test_severity_rises_with_time_alone_and_falls_with_the_ack(
    tmp_path: Path, broker: Mosquitto
) -> None:
    thresholds = {"outbox_warn_after_s": 1, "outbox_alarm_after_s": 2.5}
    uplink = uplink_section(broker.port, **FAST_LINK, **thresholds)
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink)
    daemon.start()
    collector = CollectorProcess(tmp_path / "store", uplink_section(broker.port))
    try:
        await link_state(daemon.socket, "online")  # online, but no collector acks yet
        async with ApiClient(daemon.socket) as client:
            events = client.events()
            await client.call("subscribe", {"events": ["outbox"]})
            status = await client.call("status")
            assert (status["outbox"]["severity"], status["outbox"]["oldest_age_s"]) == ("ok", None)
            await client.call("sale.commit", {"sale": cash_sale()})
            seen = [await next_outbox(events)]
            while seen[-1]["severity"] != "alarm":  # no sale, no ack: time alone
                seen.append(await next_outbox(events))
            severities = [e["severity"] for e in seen]
            # One event per change; the drain's own events (pending moved) say `ok` before.
            assert severities.count("warn") == 1 and severities.count("alarm") == 1, seen
            assert severities[-2:] == ["warn", "alarm"] and set(severities[:-2]) <= {"ok"}
            warned = seen[-2]
            assert warned["pending"] == 1 and 1 <= warned["oldest_age_s"] < 2.5, warned
            assert seen[-1]["oldest_age_s"] >= 2.5
            status = await client.call("status")
            assert status["outbox"]["severity"] == "alarm"
            assert status["outbox"]["oldest_age_s"] >= 2.5

            collector.start()  # the store acks: the banner goes away
            event = await next_outbox(events)
            while event["pending"]:
                event = await next_outbox(events)
            assert (event["severity"], event["oldest_age_s"]) == ("ok", None), event
    finally:
        collector.kill()
        daemon.terminate()


async def test_doctor_uses_the_daemons_thresholds(tmp_path: Path, broker: Mosquitto) -> None:
    """A 30-minute backlog is `alarm` for a till told to alarm after 20 minutes: doctor FAILs."""
    thresholds = {"outbox_warn_after_s": 600, "outbox_alarm_after_s": 1200}
    uplink = uplink_section(broker.port, **FAST_LINK, **thresholds)
    daemon = DaemonProcess(tmp_path / "till", uplink=uplink)
    await _journal_with_unsent(Path(daemon.journal), _stamp(timedelta(minutes=30)))
    daemon.start()
    try:
        await link_state(daemon.socket, "online")
        async with ApiClient(daemon.socket) as client:
            outbox = (await client.call("status"))["outbox"]
        assert outbox["severity"] == "alarm"
        assert 1790 <= outbox["oldest_age_s"] <= 1900, outbox
        run = await doctor("--config", str(daemon.config), "--json")
        assert run.returncode == 1
        assert checks(run)["outbox"]["level"] == "FAIL"
        shown = await asyncio.to_thread(edgectl, "--config", str(daemon.config), "status")
        (oldest,) = [x for x in shown.stdout.splitlines() if x.startswith("oldest pending")]
        assert oldest.endswith(" ago): ALARM"), shown.stdout
    finally:
        daemon.terminate()
    # The daemon stopped, doctor reads the journal file, with the same thresholds.
    run = await doctor("--config", str(daemon.config), "--json")
    assert checks(run)["outbox"]["level"] == "FAIL"
    assert "the journal file holds 2 sales" in checks(run)["outbox"]["found"]
