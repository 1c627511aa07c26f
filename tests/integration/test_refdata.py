"""Reference data snapshots end to end: the real collector CLI publishes to a real mosquitto,
a real `edged run` stores, verifies and serves them, online and offline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import msgspec
import pytest

from edged.client import ApiClient
from edged.clock import parse_utc_iso
from edged.config import load_config
from edged.errors import ConfigError
from edged.keys import collector_key_path, collector_pin_path, load_or_create, write_pin
from edged.localtime import local_text
from edged.refwire import Manifest, RefdataTopics, manifest_signed_bytes
from edged.signing import Signer
from tests.integration.test_devices_daemon import all_ready, next_event
from tests.support.daemon import CollectorProcess, DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto

STORE = "S1"
WAIT_S = 20.0


def catalog(path: Path, n: int, price_base: int = 100) -> Path:
    """A CSV catalog of `n` articles; article i has barcode 2000000000000+i."""
    rows = ["barcode,description,price,tax_code"]
    rows += [f"{2000000000000 + i},Article {i},{price_base + i},A" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def publish(collector: CollectorProcess, source: Path, date: str) -> dict[str, Any]:
    """`edged collector --config F refdata publish FILE --store S1 --date D --chunk-kib 1`."""
    done = subprocess.run(
        [
            sys.executable, "-m", "edged.cli", "collector", "--config", str(collector.config),
            "refdata", "publish", str(source), "--store", STORE, "--date", date,
            "--chunk-kib", "1",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def published_manifest(collector: CollectorProcess) -> Manifest:
    state = Path(collector.db).parent / f"refdata-{STORE}.json"
    return msgspec.json.decode(state.read_bytes(), type=Manifest)


async def retain(port: int, topic: str, payload: bytes) -> None:
    """Replace a retained message at the broker, as a rogue (or a broken network) might."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-tamper") as client:
        await client.publish(topic, payload, qos=1, retain=True)


async def call(daemon: DaemonProcess, method: str, params: dict[str, Any] | None = None) -> Any:
    async with ApiClient(daemon.socket) as client:
        return await client.call(method, params or {})


async def until_status(
    daemon: DaemonProcess, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll refdata.status until `check` holds; AssertionError with the last status if not."""
    status: dict[str, Any] = {}
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                status = await call(daemon, "refdata.status")
                if check(status):
                    return status
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached: {what}; last status {status}") from None


def active_date(date: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["active"] is not None and s["active"]["date"] == date


def refused(kind: str, date: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        refusal = status["last_refusal"]
        return refusal is not None and (refusal["kind"], refusal["date"]) == (kind, date)

    return check


def setup(
    tmp_path: Path, broker: Mosquitto, **refdata: object
) -> tuple[DaemonProcess, CollectorProcess]:
    up = uplink_section(broker.port)
    collector = CollectorProcess(tmp_path / "store", up)
    section = "[refdata]\n" + "".join(f"{k} = {v}\n" for k, v in refdata.items())
    daemon = DaemonProcess(tmp_path / "till", store=STORE, uplink=up + section)
    # The documented admin step (edgectl keys pin-collector KEY): pin the collector's key.
    key = load_or_create(collector_key_path(collector.db)).public_hex
    write_pin(collector_pin_path(daemon.journal), key)
    return daemon, collector


async def test_a_published_snapshot_is_served_online_offline_and_after_a_restart(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker)
    daemon.start()
    try:
        before = await call(daemon, "article.lookup", {"barcode": "2000000000007"})
        assert before == {"article": None, "snapshot": None}
        manifest = publish(collector, catalog(tmp_path / "c.csv", 300), "2026-01-01")
        assert manifest["chunks"] > 5  # 1 KiB chunks: the terminal assembles several
        status = await until_status(daemon, active_date("2026-01-01"), "snapshot active")
        assert status["active"]["articles"] == 300
        assert status["active"]["sha256"] == manifest["sha256"]
        found = await call(daemon, "article.lookup", {"barcode": "2000000000007"})
        assert found == {
            "article": {
                "barcode": "2000000000007",
                "description": "Article 7",
                "price": 107,
                "tax_code": "A",
            },
            "snapshot": "2026-01-01",
        }
        # the same article by its GTIN-14 spelling; an unknown one is null
        found14 = await call(daemon, "article.lookup", {"barcode": "02000000000007"})
        assert found14["article"]["price"] == 107
        assert (await call(daemon, "article.lookup", ["4006381333931"]))["article"] is None

        broker.stop()  # offline: the store is gone, the catalog is not
        offline = await call(daemon, "article.lookup", {"barcode": "2000000000299"})
        assert offline["article"]["price"] == 399
        assert daemon.terminate() == 0
        daemon.start()  # no broker at all now
        again = await call(daemon, "article.lookup", {"barcode": "2000000000299"})
        assert again == {**offline}
        status = await call(daemon, "refdata.status")
        assert status["active"]["date"] == "2026-01-01"
    finally:
        daemon.kill()


async def _tampered(port: int, collector: CollectorProcess, fault: str) -> None:
    """Spoil the retained snapshot at the broker in one way."""
    m = published_manifest(collector)
    topics = RefdataTopics("edged/v1", STORE)
    key = load_or_create(collector_key_path(collector.db))

    def signed(manifest: Manifest, signer: Signer) -> bytes:
        unsigned = msgspec.structs.replace(manifest, sig=None)
        sig = signer.sign(manifest_signed_bytes(unsigned))
        return msgspec.json.encode(msgspec.structs.replace(unsigned, sig=sig))

    if fault == "lost_chunk":
        await retain(port, topics.chunk(m.id, 2), b"")
    elif fault == "corrupt_chunk":
        async with aiomqtt.Client("127.0.0.1", port, identifier="test-read") as client:
            await client.subscribe(topics.chunk(m.id, 1), qos=1)
            async for message in client.messages:
                data = bytearray(message.payload if isinstance(message.payload, bytes) else b"")
                break
        data[10] ^= 0x01
        await retain(port, topics.chunk(m.id, 1), bytes(data))
    elif fault == "wrong_hash":  # a signed manifest whose hash is not the content's
        bad = hashlib.sha256(b"other").hexdigest()
        await retain(port, topics.manifest, signed(msgspec.structs.replace(m, sha256=bad), key))
    elif fault == "unsigned":
        await retain(
            port, topics.manifest, msgspec.json.encode(msgspec.structs.replace(m, sig=None))
        )
    elif fault == "wrong_key":  # a rogue's manifest, cheaper prices, its own key
        await retain(port, topics.manifest, signed(m, Signer.generate()))
    elif fault == "forged_signature":  # the collector's key named, a signature over other bytes
        rogue = Signer.generate().sign(b"x")
        assert m.sig is not None
        forged = msgspec.structs.replace(m, sig=msgspec.structs.replace(m.sig, value=rogue.value))
        await retain(port, topics.manifest, msgspec.json.encode(forged))


FAULTS = {
    "lost_chunk": "incomplete",
    "corrupt_chunk": "bad_hash",
    "wrong_hash": "bad_hash",
    "unsigned": "unsigned",
    "wrong_key": "wrong_key",
    "forged_signature": "bad_signature",
}


async def test_a_bad_snapshot_is_rejected_and_the_old_one_kept_and_served(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker, chunk_wait_s=1.0)
    daemon.start()
    try:
        publish(collector, catalog(tmp_path / "old.csv", 200, price_base=100), "2026-01-01")
        await until_status(daemon, active_date("2026-01-01"), "the good snapshot active")
        for n, (fault, kind) in enumerate(FAULTS.items()):
            assert daemon.terminate() == 0  # off the broker while the snapshot is spoiled
            date = f"2026-01-{n + 2:02d}"
            publish(collector, catalog(tmp_path / "new.csv", 200, price_base=1), date)
            await _tampered(broker.port, collector, fault)
            daemon.start()
            status = await until_status(daemon, refused(kind, date), f"{fault} refused: {kind}")
            assert status["active"]["date"] == "2026-01-01", fault
            assert [s["date"] for s in status["snapshots"]] == ["2026-01-01"], fault
            found = await call(daemon, "article.lookup", {"barcode": "2000000000005"})
            assert found["article"]["price"] == 105, fault  # the old price, still served
        # the store publishes again, properly: the terminal takes it
        publish(collector, catalog(tmp_path / "fixed.csv", 200, price_base=1), "2026-02-01")
        await until_status(daemon, active_date("2026-02-01"), "the fixed snapshot active")
        found = await call(daemon, "article.lookup", {"barcode": "2000000000005"})
        assert found["article"]["price"] == 6
    finally:
        daemon.kill()


async def test_the_last_k_snapshots_are_kept_and_a_date_can_be_chosen(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker, keep=2)
    daemon.start()
    try:
        for n, date in enumerate(("2026-01-01", "2026-01-05", "2026-01-09")):
            publish(collector, catalog(tmp_path / f"{n}.csv", 20, price_base=100 * (n + 1)), date)
            await until_status(daemon, active_date(date), f"{date} active")
        status = await until_status(
            daemon,
            lambda s: [x["date"] for x in s["snapshots"]] == ["2026-01-05", "2026-01-09"],
            "the oldest purged",
        )
        assert status["keep"] == 2
        barcode = {"barcode": "2000000000001"}
        assert (await call(daemon, "article.lookup", barcode))["article"]["price"] == 301
        # an older date than any kept: the nearest newer one
        status = await call(daemon, "refdata.use", {"date": "2025-12-31"})
        assert status["active"]["date"] == "2026-01-05"
        assert status["chosen_by"] == "refdata.use"
        assert (await call(daemon, "article.lookup", barcode))["article"]["price"] == 201
        # between two: the nearest older one; the choice survives a restart
        await call(daemon, "refdata.use", {"date": "2026-01-08"})
        assert daemon.terminate() == 0
        daemon.start()
        status = await call(daemon, "refdata.status")
        assert status["active"]["date"] == "2026-01-05"
        status = await call(daemon, "refdata.use", {"date": "today"})
        assert status["active"]["date"] == "2026-01-09"
        assert status["chosen_by"] == "today"
    finally:
        daemon.kill()


async def test_sync_now_takes_a_snapshot_again_and_answers_with_refdata_and_its_age(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker)
    pin = collector_pin_path(daemon.journal)
    key = pin.read_text().strip()
    write_pin(pin, Signer.generate().public_hex)  # pinned wrongly: another collector's key
    daemon.start()
    try:
        publish_start = time.time()
        publish(collector, catalog(tmp_path / "c.csv", 20), "2026-01-01")
        publish_end = time.time()
        status = await until_status(daemon, refused("wrong_key", "2026-01-01"), "wrong key")
        assert status["active"] is None
        # The technician pins the right key; the refusal was final, and only sync.now (or a
        # new manifest, or a reconnect) makes the terminal look at the manifest again.
        write_pin(pin, key)
        answer = await call(daemon, "sync.now")
        assert answer["link"] == "online" and answer["pending"] == 0, answer
        assert answer["refdata"].keys() == status.keys()  # refdata.status, afterwards
        await until_status(daemon, active_date("2026-01-01"), "taken after sync.now")

        # Once it is in use, sync.now's refdata is the status: the snapshot and its age.
        asked = time.time()
        answer = await call(daemon, "sync.now")
        answered = time.time()
        refdata = answer["refdata"]
        assert refdata["active"]["date"] == "2026-01-01"
        assert refdata["active"]["articles"] == 20
        # age_s: the seconds since the store published it, bounded by this test's own clock
        assert asked - publish_end - 0.1 <= refdata["age_s"] <= answered - publish_start + 0.1
        published = parse_utc_iso(refdata["active"]["published_at"])
        assert published is not None
        assert publish_start - 0.001 <= published <= publish_end
        later = await call(daemon, "refdata.status")
        assert later["active"] == refdata["active"]
        assert later["age_s"] >= refdata["age_s"]
        assert abs(later["age_s"] - (time.time() - published)) < 1.0
    finally:
        daemon.kill()


async def test_sync_now_fetches_a_snapshot_refused_for_a_lost_chunk_again(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker, chunk_wait_s=1.0)
    publish(collector, catalog(tmp_path / "c.csv", 200), "2026-01-01")
    m = published_manifest(collector)
    topics = RefdataTopics("edged/v1", STORE)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-read") as client:
        await client.subscribe(topics.chunk(m.id, 2), qos=1)
        async for message in client.messages:
            lost = message.payload if isinstance(message.payload, bytes) else b""
            break
    await retain(broker.port, topics.chunk(m.id, 2), b"")  # lost on its way to the broker
    daemon.start()
    try:
        await until_status(daemon, refused("incomplete", "2026-01-01"), "incomplete")
        # The store's back office puts the chunk back; only it comes to the terminal, live:
        # the others were dropped with the refused snapshot, and sync.now must ask again.
        await retain(broker.port, topics.chunk(m.id, 2), lost)
        answer = await call(daemon, "sync.now")
        assert answer["link"] == "online", answer
        status = await until_status(daemon, active_date("2026-01-01"), "taken after sync.now")
        assert status["active"]["articles"] == 200
        assert status["assembling"] is None
    finally:
        daemon.kill()


def test_a_terminal_cannot_be_named_refdata(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, terminal="refdata")
    with pytest.raises(ConfigError) as caught:
        load_config(daemon.config)
    assert caught.value.key == "terminal.terminal_id"
    assert "reserved" in caught.value.problem


async def test_a_scan_event_carries_the_article_when_the_barcode_is_known(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker)
    with daemon.config.open("a") as config:
        config.write('[devices.scanner]\ndriver = "sim"\n')
    source = tmp_path / "c.csv"
    source.write_text(
        "tax_code,barcode,price,description\nB,4006381333931,249,Pencil HB\n",
        encoding="utf-8",
    )
    daemon.start()
    try:
        publish(collector, source, "2026-01-01")
        await until_status(daemon, active_date("2026-01-01"), "snapshot active")
        async with ApiClient(daemon.socket) as client:
            await all_ready(client)
            await client.call("subscribe", {"events": ["scanner.scan"]})
            await client.call("sim.scan", {"code": "4006381333931", "symbology": "]E0"})
            scan = await next_event(client, "scanner.scan")
            assert scan["article"] == {
                "barcode": "4006381333931",
                "description": "Pencil HB",
                "price": 249,
                "tax_code": "B",
            }
            await client.call("sim.scan", {"code": "5901234123457", "symbology": "]E0"})
            unknown = await next_event(client, "scanner.scan")
            assert (unknown["code"], unknown["article"]) == ("5901234123457", None)
    finally:
        daemon.kill()


def edgectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys, edged.ctl; sys.exit(edged.ctl.main())", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_manifest_waits_for_the_collector_key_and_edgectl_shows_and_picks(
    broker: Mosquitto, tmp_path: Path
) -> None:
    daemon, collector = setup(tmp_path, broker)
    daemon.config.write_text(
        daemon.config.read_text().replace(
            'terminal_id = "T1"\n', 'terminal_id = "T1"\ntimezone = "Europe/Berlin"\n'
        )
    )
    pin = collector_pin_path(daemon.journal)
    key = pin.read_text().strip()
    pin.unlink()  # no collector key pinned yet
    daemon.start()
    try:
        shown = edgectl("refdata", "--socket", daemon.socket)
        assert shown.returncode == 1, shown.stdout  # no snapshot yet
        assert "none: no snapshot received yet" in shown.stdout
        publish(collector, catalog(tmp_path / "a.csv", 10), "2026-01-01")
        status = await until_status(daemon, refused("unpinned", "2026-01-01"), "waiting")
        assert status["active"] is None
        write_pin(pin, key)  # edgectl keys pin-collector KEY, as the README says
        await until_status(daemon, active_date("2026-01-01"), "taken once pinned")
        publish(collector, catalog(tmp_path / "b.csv", 10, price_base=500), "2026-01-02")
        await until_status(daemon, active_date("2026-01-02"), "the newer one")
        status = await call(daemon, "refdata.status")
        shown = edgectl("refdata", "--config", str(daemon.config))
        assert shown.returncode == 0, shown.stderr
        assert "in use       2026-01-02 (10 articles" in shown.stdout
        # times in the store's zone, as on the receipts; --json and the API stay UTC
        berlin = ZoneInfo("Europe/Berlin")
        published = local_text(status["active"]["published_at"], berlin)
        refused_at = local_text(status["last_refusal"]["at"], berlin)
        assert published is not None and published.endswith((" CET", " CEST"))
        assert f"published {published}, " in shown.stdout, shown.stdout
        assert f"last refused 2026-01-01 at {refused_at}: " in shown.stdout, shown.stdout
        assert status["active"]["published_at"] not in shown.stdout  # no raw UTC stamp
        as_json = edgectl("refdata", "--config", str(daemon.config), "--json")
        assert json.loads(as_json.stdout)["active"]["published_at"].endswith("Z")
        picked = edgectl("refdata", "use", "2026-01-01", "--socket", daemon.socket, "--json")
        assert picked.returncode == 0, picked.stderr
        assert json.loads(picked.stdout)["active"]["date"] == "2026-01-01"
        found = await call(daemon, "article.lookup", {"barcode": "2000000000003"})
        assert found["article"]["price"] == 103
        bad = edgectl("refdata", "use", "2026-13-01", "--socket", daemon.socket)
        assert bad.returncode != 0
        assert "date" in bad.stderr
    finally:
        daemon.kill()


def test_a_bad_file_is_not_published_and_its_problems_are_named(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path / "store", uplink_section(1))  # no broker needed
    source = tmp_path / "bad.csv"
    source.write_text("barcode,description,price,tax_code\n4006381333931,Pencil,2.49,B\n")
    done = subprocess.run(
        [
            sys.executable, "-m", "edged.cli", "collector", "--config", str(collector.config),
            "refdata", "publish", str(source), "--store", STORE, "--date", "2026-01-01",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 65
    assert f"{source}:2: column price: must be an integer in minor units" in done.stderr
