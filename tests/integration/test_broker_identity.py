"""The README's mosquitto example ties each till to its identity: no till can knock another off
the broker with its client id, nor write another's sales or read another's acks; every topic of
the Contracts passes for the role that uses it (resend requests and answers, reference data
published under its own user); edged, the collector and `edgectl doctor` work under it. The ACL
and the identity settings are read from README.md itself (tests/support/readme_broker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt
import pytest

from edged.client import ApiClient
from edged.refwire import RefdataTopics
from edged.wire import (
    Entry,
    ResendAnswer,
    Topics,
    TxBatch,
    decode_ack,
    decode_resend,
    encode,
)
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.entries import make_chain
from tests.support.mosquitto import Mosquitto, auth_conf
from tests.support.readme_broker import acl, identity_conf
from tests.support.sales import cash_sale
from tests.support.waiting import POLL_S, until

PREFIX = "edged/v1"
TAKEOVER = "already connected, closing old connection"  # mosquitto's log line (notice)
STORE = "s1"
# The users of the README's ACL and their passwords here.
PASSWORDS = {
    "edged-collector": "c-secret",
    "edged-refdata": "r-secret",
    "s1-t1": "t1-secret",
    "s1-t2": "t2-secret",
}
EDGECTL = str(Path(sys.executable).with_name("edgectl"))
EDGECTL_TIMEOUT_S = 120.0  # a guard against hangs, never a measurement


@pytest.fixture
def readme_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto with the README's ACL, its identity settings and the users of PASSWORDS."""
    for user, password in PASSWORDS.items():
        (tmp_path / f"{user}.pw").write_text(password + "\n")
    broker = Mosquitto(tmp_path, extra_conf=auth_conf(tmp_path, PASSWORDS, acl()) + identity_conf())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def collector(tmp_path: Path, readme_broker: Mosquitto) -> Iterator[CollectorProcess]:
    """The real `edged collector`, logged in as the README's collector user."""
    uplink = uplink_section(
        readme_broker.port,
        username="edged-collector",
        password_file=str(tmp_path / "edged-collector.pw"),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    proc = CollectorProcess(tmp_path / "store", uplink)
    proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


class Till:
    """A till's side of the wire under a chosen user and client id: sends batches, reads acks
    (and whatever else it subscribes to)."""

    def __init__(self, port: int, terminal: str, *, user: str, client_id: str) -> None:
        self.topics = Topics(PREFIX, STORE, terminal)
        self.terminal = terminal
        self.acks: list[int] = []
        self.received: dict[str, list[bytes]] = {}  # payloads on topics other than its ack topic
        self.gone: BaseException | None = None  # why the broker dropped it, once it has
        self.client = aiomqtt.Client(
            "127.0.0.1", port, identifier=client_id, username=user, password=PASSWORDS[user]
        )
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        await self.client.subscribe(self.topics.ack, qos=1)
        self._reader = asyncio.create_task(self._read(), name=f"acks of {self.terminal}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        try:
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                if message.topic.matches(self.topics.ack):
                    self.acks.append(decode_ack(message.payload).upto)
                else:
                    self.received.setdefault(str(message.topic), []).append(message.payload)
        except aiomqtt.MqttError as exc:
            self.gone = exc

    async def send(self, entries: Sequence[Entry], topic: str | None = None) -> None:
        batch = TxBatch(v=1, store=STORE, terminal=self.terminal, entries=list(entries))
        try:
            await self.client.publish(topic or self.topics.tx, encode(batch), qos=1)
        except aiomqtt.MqttError as exc:
            raise AssertionError(f"{self.terminal} was knocked off the broker: {exc}") from exc

    async def acked(self, upto: int) -> None:
        """Until the store acknowledged `upto`; fails at once if the broker dropped this till."""
        await until(lambda: self.gone is not None or max(self.acks, default=0) >= upto)
        assert self.gone is None, f"{self.terminal} was knocked off the broker: {self.gone}"


@contextlib.asynccontextmanager
async def till(
    broker: Mosquitto, terminal: str, *, user: str, client_id: str
) -> AsyncIterator[Till]:
    async with Till(broker.port, terminal, user=user, client_id=client_id) as t:
        yield t


def stored_hashes(collector: CollectorProcess, terminal: str) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{collector.db}?mode=ro", uri=True)) as conn:
        return list(
            conn.execute(
                "SELECT seq, hash FROM transactions WHERE terminal_id = ? ORDER BY seq", (terminal,)
            )
        )


@pytest.mark.usefixtures("collector")
async def test_a_till_cannot_knock_another_off_with_its_client_id(readme_broker: Mosquitto) -> None:
    """Till t2's credentials with t1's client id, again and again: t1 stays and is acknowledged."""
    chain = make_chain(STORE, "t1", 3)
    async with till(readme_broker, "t1", user="s1-t1", client_id="edged-s1-t1") as t1:
        for entry in chain:
            async with till(readme_broker, "t2", user="s1-t2", client_id="edged-s1-t1"):
                await t1.send([entry])
                await t1.acked(entry.seq)
    assert TAKEOVER not in readme_broker.log.read_text()


async def test_a_till_cannot_write_another_tills_sales_or_read_its_acks(
    readme_broker: Mosquitto, collector: CollectorProcess
) -> None:
    real = make_chain(STORE, "t1", 3)
    forged = make_chain(STORE, "t1", 3, tag="-forged")
    async with till(readme_broker, "t2", user="s1-t2", client_id="edged-s1-t2") as t2:
        await t2.send(forged, topic=Topics(PREFIX, STORE, "t1").tx)  # PUBACKed, then dropped
        async with till(readme_broker, "t1", user="s1-t1", client_id="edged-s1-t1") as t1:
            await t1.send(real)
            await t1.acked(3)
        # t1's last ack is retained: a subscription that could read would get it at once.
        # (mosquitto 2.0 grants the SUBACK and then delivers nothing the ACL does not allow.)
        await t2.client.subscribe(Topics(PREFIX, STORE, "t1").ack, qos=1)
        own = make_chain(STORE, "t2", 1)
        await t2.send(own)
        await t2.acked(1)  # after anything the broker had queued for t2 before it
        assert t2.received == {}
    assert stored_hashes(collector, "t1") == [(e.seq, e.hash) for e in real]


def publish_refdata(config: Path, source: Path) -> subprocess.CompletedProcess[str]:
    """`edged collector --config CONFIG refdata publish SOURCE --store s1 --date 2026-01-01`."""
    return subprocess.run(
        [
            sys.executable, "-m", "edged.cli", "collector", "--config", str(config),
            "refdata", "publish", str(source), "--store", STORE, "--date", "2026-01-01",
        ],
        capture_output=True, text=True, timeout=EDGECTL_TIMEOUT_S, check=False,
    )  # fmt: skip


def rebuild_answer(collector: CollectorProcess, terminal: str) -> tuple[str | None, int | None]:
    """When the collector took `terminal`'s resend answer, and its `retained_from`."""
    with contextlib.closing(sqlite3.connect(f"file:{collector.db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT answered_at, retained_from FROM rebuilds WHERE terminal_id = ?", (terminal,)
        ).fetchone()
    return (None, None) if row is None else (row[0], row[1])


async def test_resend_and_reference_data_pass_the_readme_acl_for_their_roles(
    tmp_path: Path, readme_broker: Mosquitto, collector: CollectorProcess
) -> None:
    """The Contracts' other topics under the README's ACL: the collector's resend request reaches
    the till, the till's answer reaches the collector, and the reference data published under
    the README's `edged-refdata` user (a copy of the collector's config) reaches the till
    without taking the running collector's client id."""
    chain = make_chain(STORE, "t1", 3)
    refdata = RefdataTopics(PREFIX, STORE)
    async with till(readme_broker, "t1", user="s1-t1", client_id="edged-s1-t1") as t1:
        await t1.client.subscribe(t1.topics.resend, qos=1)
        for topic in refdata.filters:
            await t1.client.subscribe(topic, qos=1)
        await t1.send([chain[0], chain[2]])  # seq 2 missing: the store asks for it
        await t1.acked(1)
        await until(lambda: t1.topics.resend in t1.received, "the resend request at t1")
        request = decode_resend(t1.received[t1.topics.resend][0])
        assert (request.from_, request.upto) == (2, 2)

        answer = ResendAnswer(v=1, from_=2, upto=2, retained_from=1, last_seq=3)
        await t1.client.publish(t1.topics.resend_answer, encode(answer), qos=1)
        await until(lambda: rebuild_answer(collector, "t1")[0] is not None, "the answer stored")
        assert rebuild_answer(collector, "t1")[1] == 1
        await t1.send([chain[1]])
        await t1.acked(3)

        config = tmp_path / "refdata.toml"
        config.write_text(
            collector.config.read_text()
            .replace('username = "edged-collector"', 'username = "edged-refdata"')
            .replace("edged-collector.pw", "edged-refdata.pw")
        )
        source = tmp_path / "prices.csv"
        source.write_text("barcode,description,price,tax_code\n2000000000001,Bread,249,A\n")
        published = await asyncio.to_thread(publish_refdata, config, source)
        assert published.returncode == 0, published.stderr
        manifest = json.loads(published.stdout)
        chunk = refdata.chunk(manifest["id"], 0)  # one chunk: the file is small
        await until(
            lambda: refdata.manifest in t1.received and chunk in t1.received, "the snapshot at t1"
        )
        assert json.loads(t1.received[refdata.manifest][0])["id"] == manifest["id"]
        assert hashlib.sha256(t1.received[chunk][0]).hexdigest() == manifest["sha256"]
    assert f"Client edged-collector {TAKEOVER}" not in readme_broker.log.read_text()
    assert stored_hashes(collector, "t1") == [(e.seq, e.hash) for e in chain]


def edgectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGECTL, *args], capture_output=True, text=True, timeout=EDGECTL_TIMEOUT_S, check=False
    )


async def commit_and_wait_acked(socket: str) -> int:
    """Commit one sale; its seq once the store has acknowledged it."""
    async with ApiClient(socket) as client:
        seq: int = (await client.call("sale.commit", {"sale": cash_sale()}))["seq"]

        async def acked() -> dict[str, Any]:
            status: dict[str, Any] = await client.call("status")
            return status["outbox"]

        while (await acked())["acked_upto"] < seq:
            await asyncio.sleep(POLL_S)
    return seq


async def test_edged_the_collector_and_doctor_work_under_the_readme_example(
    tmp_path: Path, readme_broker: Mosquitto, collector: CollectorProcess
) -> None:
    uplink = uplink_section(
        readme_broker.port,
        username="s1-t1",
        password_file=str(tmp_path / "s1-t1.pw"),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    daemon = DaemonProcess(tmp_path / "till", store=STORE, terminal="t1", uplink=uplink)
    daemon.start()
    try:
        first = await asyncio.wait_for(commit_and_wait_acked(daemon.socket), 30)
        assert [seq for seq, _ in stored_hashes(collector, "t1")] == [first]

        run = await asyncio.to_thread(edgectl, "doctor", "--config", str(daemon.config), "--json")
        checks = {c["name"]: c for c in json.loads(run.stdout)["checks"]}
        assert checks["broker mqtt"]["level"] == "OK", checks["broker mqtt"]
        assert checks["link"]["level"] == "OK", checks["link"]
        # As the README says: doctor's login under the daemon's user took its client id.
        assert f"Client s1-t1 {TAKEOVER}" in readme_broker.log.read_text()

        # Doctor's login took the daemon's client id for a moment; the daemon is back and sells on.
        second = await asyncio.wait_for(commit_and_wait_acked(daemon.socket), 30)
        assert [seq for seq, _ in stored_hashes(collector, "t1")] == [first, second]
    finally:
        daemon.terminate()
