"""The uplink against a real mosquitto: link states, presence, loss detection, forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest
from structlog.testing import capture_logs

from edged.config import TerminalSection, UplinkSection
from edged.events import EventHub
from edged.journal import Journal
from edged.signing import Signer
from edged.uplink import Uplink
from edged.uplink.client import Incoming, LinkError, Will, connect
from edged.uplink.forwarder import ADOPTION_WAIT_S
from edged.wire import Ack, Status, Topics, decode_tx, encode
from tests.support.forwarding import bare_forwarder
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_tls_users
from tests.support.sales import cash_sale

STORE, TERMINAL = "s1", "t1"
TOPICS = Topics("edged/v1", STORE, TERMINAL)
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
WAIT_S = 20.0  # generous deadline for conditions that should happen much sooner
REPO = Path(__file__).resolve().parents[2]


def uplink_cfg(broker: Mosquitto, **changes: Any) -> UplinkSection:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "keepalive_s": 1,
        "online_after_s": 0.3,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "ack_timeout_s": 5.0,
        "require_signed_acks": False,  # the fake collector here signs nothing
    }
    settings.update(changes)
    return UplinkSection(**settings)


def sale(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100 + n,
        "lines": [{"sku": f"SKU-{n}", "qty": 1, "amount": 100 + n}],
        "payments": [{"method": "cash", "amount": 100 + n}],
    }


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db", store_id=STORE, terminal_id=TERMINAL)
    try:
        yield j
    finally:
        await j.close()


def make_uplink(cfg: UplinkSection, journal: Journal, events: EventHub | None = None) -> Uplink:
    terminal = TerminalSection(store_id=STORE, terminal_id=TERMINAL)
    return Uplink(
        cfg, terminal, journal, events or EventHub(), "9.9.9-test", signer=Signer.generate()
    )


@contextlib.asynccontextmanager
async def running(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run coroutines as tasks for the block; cancel them at its end."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c, name=f"test-{i}") for i, c in enumerate(coros)]
        try:
            yield tasks
        finally:
            for t in tasks:
                t.cancel()


async def until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Observer:
    """A second MQTT client watching one topic (retained messages included)."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.payloads: list[bytes] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"obs-{uuid.uuid4()}") as c:
            await c.subscribe(self.topic, qos=1)
            self.ready.set()
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                self.payloads.append(msg.payload)

    def states(self) -> list[str]:
        return [msgspec.json.decode(p, type=Status).state for p in self.payloads if p]


class Acker:
    """A tiny collector: records tx batches, acks the highest contiguous seq it holds.

    `ignore_first` batches are dropped unseen; with `hold_s` it acks only after that long
    without a new batch, so the number of unacknowledged batches in flight can be counted.
    """

    def __init__(self, port: int, *, ignore_first: int = 0, hold_s: float = 0.0) -> None:
        self.port = port
        self.ignore_first = ignore_first
        self.hold_s = hold_s
        self.batches: list[list[int]] = []
        self.received: set[int] = set()
        self.upto = 0
        self.unacked_batches = 0
        self.max_unacked_batches = 0
        self.ready = asyncio.Event()
        self.payloads: list[bytes] = []

    async def run(self) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"acker-{uuid.uuid4()}", socket_options=[NODELAY]
        ) as c:
            await c.subscribe(TOPICS.tx, qos=1)
            self.ready.set()
            messages = aiter(c.messages)
            while True:
                try:
                    async with asyncio.timeout(self.hold_s or None):
                        msg = await anext(messages)
                except TimeoutError:
                    await self._ack(c)
                    continue
                assert isinstance(msg.payload, bytes)
                batch = decode_tx(msg.payload)
                if self.ignore_first > 0:
                    self.ignore_first -= 1
                    continue
                self.payloads.append(msg.payload)
                seqs = [e.seq for e in batch.entries]
                self.batches.append(seqs)
                self.received.update(seqs)
                if seqs[-1] > self.upto:
                    self.unacked_batches += 1
                    self.max_unacked_batches = max(self.max_unacked_batches, self.unacked_batches)
                if not self.hold_s:
                    await self._ack(c)

    async def _ack(self, c: aiomqtt.Client) -> None:
        while self.upto + 1 in self.received:
            self.upto += 1
        self.unacked_batches = 0
        if self.upto:
            await c.publish(TOPICS.ack, encode(Ack(v=1, upto=self.upto)), qos=1)


async def commit_sales(journal: Journal, n: int) -> None:
    await asyncio.gather(*(journal.commit(sale(i)) for i in range(n)))


# -- link -----------------------------------------------------------------------------------


async def test_reports_online_after_hysteresis_and_publishes_presence(
    broker: Mosquitto, journal: Journal
) -> None:
    events = EventHub()
    sub = events.subscribe(["link"])
    observer = Observer(broker.port, TOPICS.status)
    uplink = make_uplink(uplink_cfg(broker, online_after_s=0.5), journal, events)
    assert uplink.status()["state"] == "connecting"
    async with running(observer.run()):
        await observer.ready.wait()
        async with running(uplink.run()):
            await until(lambda: uplink.link.up)
            assert uplink.status()["state"] == "connecting"  # up, but not yet stable
            await until(lambda: uplink.status()["state"] == "online")
            await until(lambda: observer.states() == ["online"])
        # a clean stop says offline itself: a clean DISCONNECT fires no will
        await until(lambda: observer.states() == ["online", "offline"])
    online = msgspec.json.decode(observer.payloads[0], type=Status)
    assert online.version == "9.9.9-test"
    assert online.pending == 0
    status = uplink.status()
    assert status["peer"] == f"mqtt://127.0.0.1:{broker.port}"
    assert set(status) == {"state", "since", "peer", "last_ack_at", "resend", "store_permanent_gap"}
    first = await anext(aiter(sub))
    assert first.type == "link"
    assert first.data["state"] == "online"
    assert first.data["since"].endswith("Z")


async def test_last_will_says_offline_when_the_process_dies(
    broker: Mosquitto, tmp_path: Path
) -> None:
    script = textwrap.dedent(f"""
        import asyncio
        from edged.config import TerminalSection, UplinkSection
        from edged.events import EventHub
        from edged.journal import Journal
        from edged.signing import Signer
        from edged.uplink import Uplink

        async def main():
            j = await Journal.open({str(tmp_path / "j.db")!r}, store_id="s1", terminal_id="t1")
            cfg = UplinkSection(host="127.0.0.1", port={broker.port}, keepalive_s=1)
            terminal = TerminalSection(store_id="s1", terminal_id="t1")
            up = Uplink(cfg, terminal, j, EventHub(), "x", signer=Signer.generate())
            await up.run()

        asyncio.run(main())
    """)
    observer = Observer(broker.port, TOPICS.status)
    async with running(observer.run()):
        await observer.ready.wait()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await until(lambda: observer.states() == ["online"])
        finally:
            proc.kill()
            await proc.wait()
        await until(lambda: observer.states() == ["online", "offline"])
    will = msgspec.json.decode(observer.payloads[-1], type=Status)
    assert will.pending is None  # the will is written at connect time: no stale count
    # retained: a newcomer sees the terminal offline
    late = Observer(broker.port, TOPICS.status)
    async with running(late.run()):
        await until(lambda: late.states() == ["offline"])


async def test_broker_killed_then_restarted(broker: Mosquitto, journal: Journal) -> None:
    keepalive_s = 2
    uplink = make_uplink(uplink_cfg(broker, keepalive_s=keepalive_s), journal)
    async with running(uplink.run()):
        await until(lambda: uplink.status()["state"] == "online")
        broker.stop()
        await until(lambda: uplink.status()["state"] == "offline", timeout=2 * keepalive_s + 1)
        # sales go on while the link is down
        await commit_sales(journal, 20)
        broker.start()
        acker = Acker(broker.port)
        async with running(acker.run()):
            await until(lambda: uplink.status()["state"] == "online")
            await until(lambda: journal.stats().acked_upto == 20)
    assert acker.received == set(range(1, 21))
    assert uplink.status()["last_ack_at"] is not None


async def test_half_open_connection_detected_within_2x_keepalive(
    broker: Mosquitto, journal: Journal
) -> None:
    """SIGSTOP keeps the broker's sockets open but it stops answering: a half-open link.

    The broker answered an instant before it froze, so paho's own keepalive alone would
    notice only after 2x keepalive or later; the deadline needs our watchdog.
    """
    keepalive_s = 2
    uplink = make_uplink(uplink_cfg(broker, keepalive_s=keepalive_s), journal)
    acker = Acker(broker.port)
    assert broker.proc is not None
    async with running(uplink.run(), acker.run()):
        await until(lambda: uplink.status()["state"] == "online")
        await journal.commit(sale(1))
        await until(lambda: journal.stats().acked_upto == 1)
        os.killpg(broker.proc.pid, signal.SIGSTOP)
        try:
            await until(
                lambda: uplink.status()["state"] == "offline", timeout=2 * keepalive_s + 0.25
            )
            await journal.commit(sale(2))  # committed while the broker is frozen
        finally:
            os.killpg(broker.proc.pid, signal.SIGCONT)
        await until(lambda: uplink.status()["state"] == "online")
        await until(lambda: journal.stats().acked_upto == 2)


async def test_watchdog_alone_drops_a_frozen_broker(broker: Mosquitto) -> None:
    """paho's keepalive (60 s here) stays out of it: the watchdog has to notice by itself."""
    cfg = uplink_cfg(broker, keepalive_s=60)
    will = Will(TOPICS.status, b"{}")
    assert broker.proc is not None
    async with connect(
        cfg, client_id="wd", will=will, subscribe=[TOPICS.ack], probe_topic="edged/v1/probe"
    ) as conn:
        # an idle, healthy link: the probes keep it alive well past the dead line
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await conn.watchdog(1.0)
        os.killpg(broker.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(LinkError, match="no answer from the broker"):
                async with asyncio.timeout(2 * 1.0 + 0.5):
                    await conn.watchdog(1.0)
        finally:
            os.killpg(broker.proc.pid, signal.SIGCONT)


async def test_tls_with_client_certificate_and_password(tmp_path: Path, journal: Journal) -> None:
    from tests.support.ports import free_port

    make_tls_users(tmp_path)
    # the README's minimal ACL: the terminal may only touch its own three topics
    (tmp_path / "acl").write_text(
        "topic read edged/v1/+/+/tx\ntopic write edged/v1/+/+/ack\n"
        "topic read edged/v1/+/+/status\n"
        "user s1-t1\ntopic write edged/v1/s1/t1/tx\ntopic write edged/v1/s1/t1/status\n"
        "topic read edged/v1/s1/t1/ack\n"
    )
    tls_port, legacy_port = free_port(), free_port()
    broker = Mosquitto(
        tmp_path,
        extra_conf=(
            f"password_file {tmp_path / 'passwd'}\n"
            f"acl_file {tmp_path / 'acl'}\n"
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {tmp_path / 'good-ca.crt'}\n"
            f"certfile {tmp_path / 'good-server.crt'}\n"
            f"keyfile {tmp_path / 'good-server.key'}\n"
            "require_certificate true\n"
            # a broker certificate from a home-made CA without keyUsage
            f"listener {legacy_port} 127.0.0.1\n"
            f"cafile {tmp_path / 'good-ca.crt'}\n"
            f"certfile {tmp_path / 'legacy-server.crt'}\n"
            f"keyfile {tmp_path / 'legacy-server.key'}\n"
            "require_certificate true\n"
        ),
    )
    broker.start()
    good = uplink_cfg(
        broker,
        port=tls_port,
        tls=True,
        ca_file=str(tmp_path / "good-ca.crt"),
        cert_file=str(tmp_path / "good-client.crt"),
        key_file=str(tmp_path / "good-client.key"),
        username="s1-t1",
        password_file=str(tmp_path / "s1-t1.pw"),
    )
    try:
        await commit_sales(journal, 3)
        acker = Acker(broker.port)  # the collector side on the plain listener
        observer = Observer(broker.port, TOPICS.status)
        uplink = make_uplink(good, journal)
        assert uplink.status()["peer"] == f"mqtts://127.0.0.1:{tls_port}"
        async with running(acker.run(), observer.run(), uplink.run()):
            await until(lambda: journal.stats().acked_upto == 3)
            await until(lambda: uplink.status()["state"] == "online")
            await until(lambda: observer.states() == ["online"])
        # each wrong piece keeps the link offline, with an error that says why
        untrusted = msgspec.structs.replace(good, ca_file=str(tmp_path / "other-ca.crt"))
        wrong_pw = msgspec.structs.replace(good, password_file=str(tmp_path / "wrong.pw"))
        no_pw_file = msgspec.structs.replace(good, password_file=str(tmp_path / "missing.pw"))
        legacy = msgspec.structs.replace(
            good, port=legacy_port, ca_file=str(tmp_path / "legacy-ca.crt")
        )
        for cfg, words in (
            (untrusted, "certificate verify failed"),
            (legacy, "lacks the keyusage extension (keycertsign, crlsign)"),
            (wrong_pw, "not authori"),
            (no_pw_file, "missing.pw"),
        ):
            bad = make_uplink(cfg, journal)
            async with running(bad.run()):
                await until(lambda b=bad: b.link.attempts_failed >= 2)  # type: ignore[misc]
                assert bad.status()["state"] == "offline"
                assert words in (bad.link.last_error or "").lower(), bad.link.last_error
    finally:
        broker.stop()


async def test_link_refused_logs_and_keeps_retrying(tmp_path: Path, journal: Journal) -> None:
    broker = Mosquitto(tmp_path)  # not started: connection refused
    uplink = make_uplink(uplink_cfg(broker), journal)
    try:
        async with running(uplink.run()):
            await until(lambda: uplink.status()["state"] == "offline")
            await until(lambda: uplink.link.attempts_failed >= 3)
            assert "refused" in (uplink.link.last_error or "").lower()
            broker.start()
            await until(lambda: uplink.status()["state"] == "online")
    finally:
        broker.stop()


async def test_sync_now_skips_the_backoff_wait(tmp_path: Path, journal: Journal) -> None:
    broker = Mosquitto(tmp_path)
    cfg = uplink_cfg(broker, reconnect_min_s=60.0, reconnect_max_s=60.0, online_after_s=0.2)
    uplink = make_uplink(cfg, journal)
    try:
        async with running(uplink.run()):
            await until(lambda: uplink.link.attempts_failed >= 1)
            # the next attempt is a minute away; commit, start the broker, press sync
            await commit_sales(journal, 5)
            broker.start()
            acker = Acker(broker.port)
            async with running(acker.run()):
                await acker.ready.wait()
                result = await uplink.sync_now()
                assert result == {"link": "online", "pending": 0}
            # with the broker gone again, sync_now reports promptly after a failed attempt
            broker.stop()
            await until(lambda: uplink.status()["state"] == "offline")
            await commit_sales(journal, 1)
            result = await uplink.sync_now()
            assert result == {"link": "offline", "pending": 1}
    finally:
        broker.stop()


# -- forwarder ------------------------------------------------------------------------------


async def test_drains_backlog_and_new_commits_in_seq_order(
    broker: Mosquitto, journal: Journal
) -> None:
    await commit_sales(journal, 300)
    events = EventHub()
    outbox = events.subscribe(["outbox"], maxsize=10_000)
    acker = Acker(broker.port)
    uplink = make_uplink(uplink_cfg(broker, batch_max=40, window=3), journal, events)
    async with running(acker.run()):
        await acker.ready.wait()
        async with running(uplink.run()):
            await until(lambda: journal.stats().acked_upto == 300)
            # new sales join the tail while the link is up (woken by commit, not polling)
            for i in range(30):
                await journal.commit(sale(1000 + i))
            await until(lambda: journal.stats().acked_upto == 330)
    flat = [s for batch in acker.batches for s in batch]
    assert flat == list(range(1, 331))  # once each, in order, no resend on a healthy link
    assert max(len(b) for b in acker.batches) == 40
    assert (uplink.forwarder.resends, uplink.forwarder.batches_sent) == (0, len(acker.batches))
    # the payload carries the journal's own bytes and hashes
    first = decode_tx(acker.payloads[0])
    stored = await journal.unacked(0, 1)
    assert stored == []  # all acked
    got = await journal.get(first.entries[0].id)
    assert got is not None
    entry, acked = got
    assert acked
    assert first.entries[0].hash == entry.hash.hex()
    assert first.entries[0].prev_hash == entry.prev_hash.hex()
    assert bytes(first.entries[0].sale) == entry.sale_json
    assert (first.store, first.terminal, first.v) == (STORE, TERMINAL, 1)
    # outbox events: bounded, and the last one says the drain finished
    seen = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2):
            async for ev in outbox:
                seen.append(ev.data)
    assert seen
    assert len(seen) < 330
    assert seen[-1] == {
        "pending": 0,
        "acked_upto": 330,
        "last_seq": 330,
        "oldest_age_s": None,
        "severity": "ok",
    }


async def test_batches_are_cut_under_the_byte_cap_and_a_damaged_entry_is_said(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Sales of 300 kB: three fit under BATCH_MAX_BYTES, whatever batch_max allows. A damaged
    entry goes out flagged and is announced as a `journal` event."""
    path = tmp_path / "big.db"
    big = await Journal.open(path, store_id=STORE, terminal_id=TERMINAL)
    for _ in range(5):
        await big.commit(cash_sale(pad=300_000))
    await big.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE entries SET sale = substr(sale, 1, 20) WHERE seq = 5")
    big = await Journal.open(path, store_id=STORE, terminal_id=TERMINAL)
    events = EventHub()
    journal_events = events.subscribe(["journal"])
    try:
        acker = Acker(broker.port)
        uplink = make_uplink(uplink_cfg(broker, batch_max=10), big, events)
        async with running(acker.run()):
            await acker.ready.wait()
            async with running(uplink.run()):
                await until(lambda: big.stats().acked_upto == 5)
        assert acker.batches == [[1, 2, 3], [4, 5]]
        async with asyncio.timeout(2.0):  # published before the batch was sent
            said = (await anext(aiter(journal_events))).data
        assert (said["kind"], said["seq"]) == ("damaged_entry", 5)
    finally:
        await big.close()


async def test_resends_after_ack_timeout(broker: Mosquitto, journal: Journal) -> None:
    await commit_sales(journal, 50)
    acker = Acker(broker.port, ignore_first=1)
    uplink = make_uplink(uplink_cfg(broker, batch_max=10, window=2, ack_timeout_s=0.5), journal)
    async with running(acker.run()):
        await acker.ready.wait()
        async with running(uplink.run()):
            await until(lambda: journal.stats().acked_upto == 50)
    assert uplink.forwarder.resends >= 1
    assert acker.received == set(range(1, 51))
    assert acker.batches[-1][-1] == 50


async def test_window_bounds_unacknowledged_batches(broker: Mosquitto, journal: Journal) -> None:
    await commit_sales(journal, 200)
    acker = Acker(broker.port, hold_s=0.3)
    uplink = make_uplink(uplink_cfg(broker, batch_max=10, window=4), journal)
    async with running(acker.run()):
        await acker.ready.wait()
        async with running(uplink.run()):
            await until(lambda: journal.stats().acked_upto == 200)
    assert acker.max_unacked_batches == 4
    assert uplink.forwarder.resends == 0
    assert [s for b in acker.batches for s in b] == list(range(1, 201))


async def test_unacked_entries_are_resent_after_a_reconnect(
    broker: Mosquitto, journal: Journal
) -> None:
    await commit_sales(journal, 30)
    silent = Acker(broker.port, hold_s=60.0)  # receives, never acks in time
    uplink = make_uplink(uplink_cfg(broker, batch_max=10, window=8, ack_timeout_s=60.0), journal)
    async with running(uplink.run()):
        async with running(silent.run()):
            await until(lambda: len(silent.received) == 30)
        assert journal.stats().acked_upto == 0
        broker.stop()
        await until(lambda: uplink.status()["state"] == "offline")
        broker.start()
        acker = Acker(broker.port)
        async with running(acker.run()):
            await until(lambda: journal.stats().acked_upto == 30)
    assert acker.received == set(range(1, 31))  # resent because of the reconnect


async def test_a_reconnect_frees_the_window_of_batches_the_old_connection_sent(
    broker: Mosquitto, journal: Journal
) -> None:
    """Batches sent on a lost connection hold no place in the new one's window: the new
    connection sends at once, it does not first wait for them to time out (no resend)."""
    await commit_sales(journal, 20)
    acker = Acker(broker.port, hold_s=60.0)  # receives, acks only when told below
    cfg = uplink_cfg(broker, batch_max=10, window=1, ack_timeout_s=60.0)
    uplink = make_uplink(cfg, journal)
    async with running(acker.run()):
        await acker.ready.wait()
        async with running(uplink.run()):
            await until(lambda: len(acker.received) == 10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as store:
                await store.publish(TOPICS.ack, encode(Ack(v=1, upto=10)), qos=1)
            await until(lambda: len(acker.received) == 20)  # 11-20: the window is full
            resends = uplink.forwarder.resends
            acker.hold_s = 0.0  # from now on it acks each batch it receives
            # A client with the terminal's id takes its session over: the link drops.
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="edged-s1-t1"):
                await until(lambda: uplink.status()["state"] == "offline")
            await until(lambda: journal.stats().acked_upto == 20)
            assert uplink.forwarder.resends == resends  # sent again at once, not on a timeout


async def test_bogus_acks_are_ignored(broker: Mosquitto, journal: Journal) -> None:
    await commit_sales(journal, 5)
    silent = Acker(broker.port, hold_s=60.0)
    uplink = make_uplink(uplink_cfg(broker, ack_timeout_s=60.0), journal)
    async with running(uplink.run(), silent.run()):
        await until(lambda: len(silent.received) == 5)
        async with aiomqtt.Client("127.0.0.1", broker.port) as rogue:
            for payload in (
                b"not json",
                b'{"v":1}',
                b'{"v":2,"upto":3}',
                b'{"v":1,"upto":"3"}',
                b'{"v":1,"upto":-1}',
            ):
                await rogue.publish(TOPICS.ack, payload, qos=1)
            # a good ack after the bad ones proves they were all read (the topic is ordered)
            await rogue.publish(TOPICS.ack, b'{"v":1,"upto":2}', qos=1)
            await until(lambda: journal.stats().acked_upto == 2)
            await rogue.publish(TOPICS.ack, b'{"v":1,"upto":1}', qos=1)  # stale: no-op
            await rogue.publish(TOPICS.ack, b'{"v":1,"upto":5}', qos=1)
            await until(lambda: journal.stats().acked_upto == 5)
        await until(lambda: uplink.status()["state"] == "online")
        assert uplink.link.attempts_failed == 0


EXTRA = f"{TOPICS.ack.removesuffix('/ack')}/extra"


async def deliver_extra(
    broker: Mosquitto,
    journal: Journal,
    others: Callable[[Incoming], Awaitable[bool]] | None,
    count: Callable[[list[str]], bool],
) -> list[str]:
    """Run a forwarder on a connection also subscribed to EXTRA/#, publish one message on
    EXTRA/refdata and one on EXTRA/other; the topics it logged as unexpected."""
    fwd = bare_forwarder(journal, store=STORE, terminal=TERMINAL, others=others)
    with capture_logs() as logs:
        async with (
            connect(
                uplink_cfg(broker),
                client_id="forwarder-under-test",
                will=None,
                subscribe=[TOPICS.ack, f"{EXTRA}/#"],
                probe_topic=f"{EXTRA}-probe",
            ) as conn,
            running(fwd.run(conn)),
            aiomqtt.Client("127.0.0.1", broker.port) as store,
        ):
            for topic in (f"{EXTRA}/refdata", f"{EXTRA}/other"):
                await store.publish(topic, b"{}", qos=1)

            def warned() -> list[str]:
                return sorted(e["topic"] for e in logs if e["event"] == "mqtt_unexpected_message")

            async with asyncio.timeout(5.0):
                while not count(warned()):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # nothing more comes
    return warned()


async def test_messages_on_further_topics_go_to_their_handler_or_are_logged(
    broker: Mosquitto, journal: Journal
) -> None:
    """What is neither an ack nor a resend request goes to `others` (reference data); what
    that does not take, or everything with no `others`, is logged as unexpected."""
    taken: list[str] = []

    async def refdata(msg: Incoming) -> bool:
        taken.append(msg.topic)
        return msg.topic.endswith("/refdata")

    warned = await deliver_extra(broker, journal, refdata, lambda w: len(taken) == 2 and bool(w))
    assert (sorted(taken), warned) == ([f"{EXTRA}/other", f"{EXTRA}/refdata"], [f"{EXTRA}/other"])
    warned = await deliver_extra(broker, journal, None, lambda w: len(w) == 2)
    assert warned == [f"{EXTRA}/other", f"{EXTRA}/refdata"]


async def test_a_retained_ack_acknowledges_nothing(broker: Mosquitto, journal: Journal) -> None:
    """A retained ack (the store's word from before) must not mark entries acknowledged: a
    journal that fell behind the store may hold other sales under those seqs. They are sent,
    and the store's next ack counts."""
    await commit_sales(journal, 3)
    async with aiomqtt.Client("127.0.0.1", broker.port) as store:
        await store.publish(TOPICS.ack, b'{"v":1,"upto":3}', qos=1, retain=True)
    acker = Acker(broker.port, hold_s=60.0)
    uplink = make_uplink(uplink_cfg(broker, ack_timeout_s=60.0), journal)
    async with running(acker.run(), uplink.run()):
        await until(lambda: len(acker.received) == 3)
        assert journal.stats().acked_upto == 0
        async with aiomqtt.Client("127.0.0.1", broker.port) as store:
            await store.publish(TOPICS.ack, b'{"v":1,"upto":3}', qos=1)
        await until(lambda: journal.stats().acked_upto == 3)


async def test_an_ack_for_entries_sent_before_a_restart_counts(journal: Journal) -> None:
    """Sent by a previous process before a restart: the collector stored them, the ack is true."""
    await commit_sales(journal, 3)
    fwd = bare_forwarder(journal, store=STORE, terminal=TERMINAL)
    await fwd.handle_ack(TOPICS.ack, b'{"v":1,"upto":3}')
    assert journal.stats().acked_upto == 3


# -- with the real collector ----------------------------------------------------------------


def collector_cfg(broker: Mosquitto, db: Path) -> Any:
    from edged.config import CollectorConfig, CollectorSection

    return CollectorConfig(
        uplink=uplink_cfg(broker),
        collector=CollectorSection(db=f"sqlite:///{db}"),
        source=str(db.parent / "collector.toml"),
    )


def stored_seqs(db: Path) -> list[int]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT seq FROM transactions WHERE store_id = ? AND terminal_id = ? ORDER BY rowid",
            (STORE, TERMINAL),
        ).fetchall()
    return [r[0] for r in rows]


def stored_links(db: Path) -> dict[int, tuple[str, str]]:
    """seq -> (prev_hash, hash) of what the store holds for TERMINAL, sales and held slots."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT seq, prev_hash, hash FROM transactions WHERE store_id = ? AND terminal_id = ?"
            " UNION ALL SELECT seq, prev_hash, hash FROM held"
            " WHERE store_id = ? AND terminal_id = ?",
            (STORE, TERMINAL, STORE, TERMINAL),
        ).fetchall()
    return {seq: (prev, hash_) for seq, prev, hash_ in rows}


async def test_end_to_end_with_the_collector(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    from edged.collector import run_collector

    db = tmp_path / "store.db"
    ready = asyncio.Event()
    await commit_sales(journal, 400)  # a backlog
    uplink = make_uplink(uplink_cfg(broker, batch_max=50, window=4), journal)
    async with running(run_collector(collector_cfg(broker, db), ready=ready)):
        await ready.wait()
        async with running(uplink.run()):
            for i in range(100):  # and sales rung up while it drains
                await journal.commit(sale(500 + i))
            await until(lambda: journal.stats().acked_upto == 500)
    assert stored_seqs(db) == list(range(1, 501))  # once each, in seq order


async def test_a_replaced_till_adopts_the_stores_seqs(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    """A new journal for a terminal id the store has a history for sells at once, sends
    nothing until the store's retained ack tells its seqs, then continues after them: the
    store's chain holds across, nothing is lost and no seq collides."""
    from edged.collector import run_collector
    from edged.collector.keyadmin import keys_command
    from edged.collector.report import collector_report
    from edged.journal.verify import verify_journal

    db = tmp_path / "store.db"
    ready = asyncio.Event()
    await commit_sales(journal, 3)  # the old till
    async with running(run_collector(collector_cfg(broker, db), ready=ready)):
        await ready.wait()
        async with running(make_uplink(uplink_cfg(broker), journal).run()):
            await until(lambda: journal.stats().acked_upto == 3)
        path = tmp_path / "new" / "journal.db"  # the replacement: same ids, an empty disk
        new = await Journal.open(path, store_id=STORE, terminal_id=TERMINAL, adopt=True)
        # It has a new key: the store admin's step (README "Adopting a replaced till")
        keys_command(f"sqlite:///{db}", ["forget", STORE, TERMINAL])
        sold = sale(1)
        first = await new.commit(sold)  # sold before the store was reached
        assert first.seq == 1 and "-P" in first.receipt_no
        async with running(make_uplink(uplink_cfg(broker), new).run()):
            await until(lambda: new.stats().acked_upto == 5)  # 4: the adoption, 5: that sale
            after = await new.commit(sale(2))
            await until(lambda: new.stats().acked_upto == 6)
        got = await new.get(sold["id"])
        adopted = await new.retained(3, 6, 10)  # the adoption and the sales after it
        await new.close()
    assert got is not None and got[0].seq == 5 and got[0].receipt_no == first.receipt_no
    assert after.seq == 6 and "-P" not in after.receipt_no
    assert stored_seqs(db) == [1, 2, 3, 5, 6]  # seq 4, the adoption, is held: not a sale
    # The store's chain check passes across: the adoption links to the genesis hash, as the
    # old till's seq 1 did, and the new till's sales link to the adoption's hash.
    links = stored_links(db)
    assert [(e.seq, e.prev_hash.hex(), e.hash.hex()) for e in adopted] == [
        (seq, *links[seq]) for seq in (4, 5, 6)
    ]
    assert links[4][0] == "00" * 32 and links[5][0] == links[4][1] and links[6][0] == links[5][1]
    store = collector_report(f"sqlite:///{db}")
    (terminal,) = store["terminals"]
    assert terminal["chain_broken_at"] is None and terminal["contiguous_upto"] == 6
    assert terminal["lost"] == []  # the store holds 1..3: the adoption declared nothing lost
    # The adoption shows as what it is, a held journal_gap, and as nothing else (README).
    assert [(p["seq"], p["kind"]) for p in store["problems"]] == [(4, "journal_gap")]
    report = verify_journal(path)
    assert report.lost == () and report.adopted is not None
    assert (report.adopted.first, report.adopted.last, report.adopted.gap_seq) == (1, 3, 4)


async def test_a_new_till_the_store_has_no_history_for_sends_after_the_adoption_wait(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """No retained ack within ADOPTION_WAIT_S: the store holds nothing for this terminal id,
    the provisional entries keep their seqs and go out."""
    new = await Journal.open(tmp_path / "new.db", store_id=STORE, terminal_id=TERMINAL, adopt=True)
    try:
        await commit_sales(new, 2)
        acker = Acker(broker.port)
        with capture_logs() as logs:
            async with running(acker.run()):
                await acker.ready.wait()
                async with running(make_uplink(uplink_cfg(broker), new).run()):
                    await until(lambda: new.stats().acked_upto == 2, timeout=10.0)
        assert not new.adoption_pending
        assert acker.received == {1, 2}
        told = [e for e in logs if e["event"] == "journal_adoption_no_history"]
        assert [e["waited_s"] for e in told] == [ADOPTION_WAIT_S]
    finally:
        await new.close()


async def test_broker_restart_drains_to_the_collector_by_itself(
    broker: Mosquitto, journal: Journal, tmp_path: Path
) -> None:
    from edged.collector import run_collector

    db = tmp_path / "store.db"
    ready = asyncio.Event()
    uplink = make_uplink(uplink_cfg(broker, keepalive_s=1, batch_max=20), journal)
    async with running(run_collector(collector_cfg(broker, db), ready=ready), uplink.run()):
        await ready.wait()
        await commit_sales(journal, 50)
        await until(lambda: journal.stats().acked_upto == 50)
        broker.stop()
        await until(lambda: uplink.status()["state"] == "offline", timeout=2 * 1 + 1)
        await commit_sales(journal, 150)  # the tail grows while the store is unreachable
        broker.start()
        await until(lambda: journal.stats().acked_upto == 200)
        await until(lambda: uplink.status()["state"] == "online")
    seqs = stored_seqs(db)
    # Nothing lost, nothing stored twice. Not necessarily stored in seq order: a terminal that
    # resubscribes before the collector loses its first batches to a fresh broker and resends
    # them after ack_timeout_s, so later seqs may be stored first (the collector reports the
    # gap meanwhile). Insert order is not part of the contract; seq is.
    assert sorted(seqs) == list(range(1, 201))
    assert len(seqs) == 200


async def test_before_the_first_ack_on_a_connection_resends_come_early(
    broker: Mosquitto, journal: Journal
) -> None:
    """A fresh broker may have lost the collector's subscription: what the terminal sent before
    the collector came back is gone, and waiting the whole ack_timeout_s would stall the drain."""
    await commit_sales(journal, 20)
    uplink = make_uplink(uplink_cfg(broker, batch_max=10, ack_timeout_s=60.0), journal)
    async with running(uplink.run()):
        await until(lambda: uplink.forwarder.batches_sent >= 2)  # into the void: no subscriber
        acker = Acker(broker.port)
        async with running(acker.run()):
            await acker.ready.wait()
            await until(lambda: journal.stats().acked_upto == 20, timeout=10)
    assert uplink.forwarder.resends >= 1  # long before ack_timeout_s (60 s)


async def test_early_resends_double_then_start_at_1_s_again_after_a_reconnect(
    broker: Mosquitto, journal: Journal
) -> None:
    await commit_sales(journal, 5)
    uplink = make_uplink(uplink_cfg(broker, ack_timeout_s=60.0), journal)
    with capture_logs() as logs:
        async with running(uplink.run()):
            await until(lambda: uplink.forwarder.resends >= 2)  # no collector: after 1 s, 2 s
            broker.stop()
            await until(lambda: uplink.status()["state"] == "offline")
            broker.start()
            await until(lambda: uplink.forwarder.resends >= 3)
    waits = [e["waited_s"] for e in logs if e["event"] == "ack_timeout_resend"]
    assert waits[:3] == [1.0, 2.0, 1.0]  # not 4 s: a new connection starts over
