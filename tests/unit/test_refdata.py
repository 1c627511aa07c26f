"""Reference data: the date rule, today in the store's zone, the publisher's file checks, the
snapshot body, refdata.db, the sync's answer to sync.now."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

import edged.refdata
from edged.collector.refsource import RefdataSourceError, read_source
from edged.journal.refdata import RefdataStore, Snapshot, SnapshotRejected
from edged.keys import write_pin
from edged.refdata import Refdata, today_in
from edged.refwire import (
    Article,
    BodyError,
    Discount,
    Manifest,
    RefdataTopics,
    article_key,
    choose,
    decode_lines,
    encode_body,
    manifest_signed_bytes,
)
from edged.signing import Signer
from edged.uplink.client import Incoming
from edged.uplink.refdata import RefdataSync
from tests.support.waiting import WAIT_S, until

HELD = ["2026-01-05", "2026-01-10", "2026-01-20"]


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        ("2026-01-10", "2026-01-10"),  # exact
        ("2026-01-15", "2026-01-10"),  # the nearest older
        ("2026-02-01", "2026-01-20"),  # past the newest: the newest
        ("2026-01-01", "2026-01-05"),  # none older: the nearest newer
        ("2026-01-05", "2026-01-05"),
        ("2026-01-19", "2026-01-10"),
    ],
)
def test_the_snapshot_date_rule(wanted: str, chosen: str) -> None:
    assert choose(HELD, wanted) == chosen
    assert choose(reversed(HELD), wanted) == chosen


def test_no_snapshot_no_choice() -> None:
    assert choose([], "2026-01-01") is None


def test_numeric_barcodes_compare_as_gtin_14() -> None:
    assert article_key("036000291452") == article_key("0036000291452") == "00036000291452"
    assert article_key("ABC-1") == "ABC-1"
    assert article_key("1234567") == "1234567"  # too short for a GTIN: as it is


LINES = [
    Article("4006381333931", "Pencil HB", 249, "B"),
    Discount("d1", {"kind": "percent", "value": 10, "barcodes": ["4006381333931"]}),
]


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_the_body_decodes_whatever_the_chunk_cuts(size: int) -> None:
    body = encode_body(LINES)
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    assert list(decode_lines(pieces)) == LINES


def test_a_bad_body_line_is_named() -> None:
    body = encode_body(LINES) + b'{"type": "article", "barcode": "1"}\n'
    with pytest.raises(BodyError, match="line 3: .*description"):
        list(decode_lines([body]))
    with pytest.raises(BodyError, match="line 1: .*newline"):
        list(decode_lines([b'{"type": "discount"}']))


def test_csv_problems_name_file_line_and_column(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text(
        "barcode,description,price,tax_code\n"
        "4006381333931,Pencil,2.49,B\n"
        "4006381333932,,100,B\n"
        "004006381333931,Pencil again,100,B\n"
        "x y,Space,100,B\n"
    )
    with pytest.raises(RefdataSourceError) as caught:
        read_source(source)
    problems = caught.value.problems
    assert problems[0].startswith(f"{source}:2: column price: must be an integer in minor units")
    assert problems[1].startswith(f"{source}:3: column description:")
    assert problems[2].startswith(f"{source}:5: column barcode:")
    assert len(problems) == 3


def test_a_duplicate_barcode_names_both_lines(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text(
        "barcode,description,price,tax_code\n4006381333931,A,1,B\n04006381333931,B,2,B\n"
    )
    with pytest.raises(RefdataSourceError, match=":3: column barcode: .* same article as line 2"):
        read_source(source)


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text("ean,description,price,tax_code\n1,A,1,B\n")
    with pytest.raises(RefdataSourceError, match=":1: the header is"):
        read_source(source)


def test_json_problems_name_the_key(tmp_path: Path) -> None:
    source = tmp_path / "c.json"
    source.write_text(
        '{"articles": [{"barcode": "1", "description": "A", "price": 1.5, "tax_code": "B"}],'
        ' "discounts": [{"id": "d1", "rule": {"percent": 2.5}}]}'
    )
    with pytest.raises(RefdataSourceError) as caught:
        read_source(source)
    assert caught.value.problems == [
        f"{source}: articles[0]: price: expected int, got float",
        f"{source}: discounts[0].rule.percent: a number with a fraction; money and quantities "
        "are integers (minor units, or a decimal string)",
    ]


def test_json_with_discounts_reads(tmp_path: Path) -> None:
    source = tmp_path / "c.json"
    source.write_text(
        '{"articles": [{"barcode": "4006381333931", "description": "Pencil HB", "price": 249,'
        ' "tax_code": "B"}], "discounts": [{"id": "d1", "rule": {"kind": "percent",'
        ' "value": 10, "barcodes": ["4006381333931"]}}]}'
    )
    assert read_source(source) == LINES


def manifest_for(body: bytes, chunk_size: int, **changes: object) -> Manifest:
    fields: dict[str, object] = {
        "v": 1,
        "store": "S1",
        "date": "2026-01-01",
        "id": "0123456789abcdef",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "chunks": -(-len(body) // chunk_size),
        "chunk_size": chunk_size,
        "articles": 1,
        "discounts": 1,
        "published_at": "2026-01-01T00:00:00.000Z",
    }
    return Manifest(**{**fields, **changes})  # type: ignore[arg-type]


def staged(store: RefdataStore, body: bytes, chunk_size: int) -> None:
    for n, i in enumerate(range(0, len(body), chunk_size)):
        store.stage("0123456789abcdef", n, body[i : i + chunk_size])


def test_a_verified_snapshot_is_built_and_answers_lookups(tmp_path: Path) -> None:
    store = RefdataStore.open(tmp_path / "refdata.db")
    try:
        body = encode_body(LINES)
        staged(store, body, 16)
        snapshot = store.build(manifest_for(body, 16))
        assert store.lookup("4006381333931") is None  # built, not yet active
        store.activate(snapshot)
        assert store.lookup("04006381333931") == {
            "barcode": "4006381333931",
            "description": "Pencil HB",
            "price": 249,
            "tax_code": "B",
        }
        assert store.staged("0123456789abcdef") == set()  # the chunks are gone
    finally:
        store.close()
    reopened = RefdataStore.open(tmp_path / "refdata.db")
    try:
        assert reopened.active is not None
        assert reopened.active.date == "2026-01-01"
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("spoil", "kind"),
    [
        ("missing", "incomplete"),
        ("short", "bad_chunk"),
        ("flipped", "bad_hash"),
        ("count", "bad_count"),
        ("line", "bad_line"),
        ("duplicate", "bad_line"),
    ],
)
def test_a_spoiled_snapshot_is_rejected_and_nothing_kept(
    tmp_path: Path, spoil: str, kind: str
) -> None:
    store = RefdataStore.open(tmp_path / "refdata.db")
    try:
        lines = list(LINES)
        if spoil == "duplicate":
            lines.append(Article("04006381333931", "Same", 1, "B"))
        body = encode_body(lines)
        if spoil == "line":
            body += b'{"type": "article"}\n'
        changes: dict[str, object] = {"articles": 2} if spoil == "duplicate" else {}
        if spoil == "count":
            changes = {"articles": 5}
        manifest = manifest_for(body, 16, **changes)
        staged(store, body, 16)
        if spoil == "missing":
            store.drop_staged(None)
            store.stage(manifest.id, 0, body[:16])
        elif spoil == "short":
            store.stage(manifest.id, 1, body[16:30])
        elif spoil == "flipped":
            store.stage(manifest.id, 1, bytes([body[16] ^ 1]) + body[17:32])
        with pytest.raises(SnapshotRejected) as caught:
            store.build(manifest)
        assert caught.value.kind == kind, caught.value.problem
        assert store.snapshots() == []
        assert store.active is None
    finally:
        store.close()


def test_a_damaged_file_is_set_aside_and_a_new_one_made(tmp_path: Path) -> None:
    path = tmp_path / "refdata.db"
    path.write_bytes(b"this is no SQLite database, but a disk's bad day" * 100)
    store = RefdataStore.open(path)
    try:
        assert store.active is None
        assert store.snapshots() == []
    finally:
        store.close()
    aside = [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1


def stored(store: RefdataStore, date: str, n: int) -> None:
    """A verified snapshot for `date` in `store` (not yet in use), its id made from `n`."""
    body = encode_body(LINES)
    manifest = manifest_for(body, 64, date=date, id=f"{n:016x}")
    for i, start in enumerate(range(0, len(body), 64)):
        store.stage(manifest.id, i, body[start : start + 64])
    store.build(manifest)


def iso_day(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def epoch(utc: str) -> float:
    return dt.datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(
    ("zone", "day", "midnight_utc"),
    [
        ("Europe/Berlin", "2026-12-07", "2026-12-06T23:00:00Z"),  # CET: UTC is still the 6th
        ("Europe/Berlin", "2026-10-25", "2026-10-24T22:00:00Z"),  # CEST; a 25-hour day
        ("America/New_York", "2026-12-07", "2026-12-07T05:00:00Z"),  # UTC is the 7th already
    ],
)
async def test_today_is_the_stores_date_and_its_snapshot_starts_at_local_midnight(
    tmp_path: Path, zone: str, day: str, midnight_utc: str
) -> None:
    store = RefdataStore.open(tmp_path / "refdata.db")
    now = [0.0]
    try:
        for n, date in enumerate((iso_day(day, -1), day, iso_day(day, 2))):
            stored(store, date, n)
        refdata = Refdata(store, keep=3, today=today_in(ZoneInfo(zone), lambda: now[0]))
        midnight = epoch(midnight_utc)
        for at, wanted, chosen in (
            (midnight - 26 * 3600, iso_day(day, -2), iso_day(day, -1)),  # none older: newer
            (midnight - 1, iso_day(day, -1), iso_day(day, -1)),  # 23:59:59 the day before
            (midnight, day, day),  # local midnight: the day's own snapshot
            (midnight + 36 * 3600, iso_day(day, 1), day),  # none for it: the nearest older
        ):
            now[0] = at
            await refdata.select()
            assert refdata.wanted_date() == wanted, at
            assert store.active is not None and store.active.date == chosen, at
    finally:
        store.close()


async def test_the_day_change_is_noticed_without_being_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edged.refdata, "DAY_CHECK_S", 0.01)
    store = RefdataStore.open(tmp_path / "refdata.db")
    now = [epoch("2026-12-06T22:59:59Z")]  # 23:59:59 in Berlin
    try:
        stored(store, "2026-12-06", 0)
        stored(store, "2026-12-07", 1)
        refdata = Refdata(store, keep=3, today=today_in(ZoneInfo("Europe/Berlin"), lambda: now[0]))
        running = asyncio.create_task(refdata.run(), name="refdata")
        try:
            await until(lambda: store.active is not None, "the snapshot chosen at start")
            assert store.active is not None and store.active.date == "2026-12-06"
            now[0] += 1  # midnight in Berlin; 23:00 in UTC
            await until(
                lambda: store.active is not None and store.active.date == "2026-12-07",
                "the new day's snapshot in use",
            )
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    finally:
        store.close()


async def test_sync_now_during_a_build_neither_refuses_nor_fetches_that_snapshot_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RefdataStore.open(tmp_path / "refdata.db")
    signer = Signer.generate()
    pin = tmp_path / "collector.pin"
    write_pin(pin, signer.public_hex)
    body = encode_body(LINES)
    unsigned = manifest_for(body, 16)
    manifest = msgspec.structs.replace(unsigned, sig=signer.sign(manifest_signed_bytes(unsigned)))
    topics = RefdataTopics("edged/v1", "S1")
    building, release = threading.Event(), threading.Event()
    build = store.build

    def held_up_build(wanted: Manifest) -> Snapshot:
        building.set()
        release.wait(WAIT_S)
        return build(wanted)

    monkeypatch.setattr(store, "build", held_up_build)
    assembling_when_stored: list[object] = []
    asked: list[list[str]] = []

    async def on_snapshot(snapshot: Snapshot) -> None:
        assembling_when_stored.append(sync.waiting_for)

    async def refetch(filters: Sequence[str]) -> None:
        asked.append(list(filters))

    # chunk_wait_s 0: a manifest wanted again would be refused at the very next step
    sync = RefdataSync(
        store, topics, store_id="S1", pin_path=pin, chunk_wait_s=0.0, on_snapshot=on_snapshot
    )
    sync.refetch = refetch
    running = asyncio.create_task(sync.run(), name="refdata-sync")
    try:
        for n, start in enumerate(range(0, len(body), 16)):  # chunks first, as retained may
            chunk = Incoming(topics.chunk(manifest.id, n), body[start : start + 16], True)
            await sync.handle(chunk)
        await sync.handle(Incoming(topics.manifest, msgspec.json.encode(manifest), True))
        await until(building.is_set, "the build started")
        await sync.refresh()  # sync.now while the snapshot is built in its thread
        release.set()
        await until(lambda: assembling_when_stored, "the snapshot stored")
        assert assembling_when_stored == [None]  # not wanted again once built
        assert asked == [[topics.manifest]]  # a newer manifest, perhaps; not these chunks
        await until(lambda: sync.waiting_for is None, "nothing assembling")
        assert sync.last_refusal is None
        await sync.refresh()  # and once it is held, again only the manifest is asked for
        assert asked[-1] == [topics.manifest]
        assert sync.waiting_for is None
    finally:
        release.set()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        store.close()
