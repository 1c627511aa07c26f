"""Local time on receipts: daylight-saving changes, ambiguous and missing hours, the zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edged.config import load_config
from edged.devices.printer.layout import ReceiptLayout
from edged.devices.printer.receipt import receipt_text
from edged.errors import ConfigError
from edged.localtime import local_text, zone
from edged.receipts import sale_document

BERLIN = ZoneInfo("Europe/Berlin")


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize(
    ("utc", "shown"),
    [
        # 2026-03-29, the last Sunday of March: at 01:00 UTC 02:00 CET becomes 03:00 CEST.
        ("2026-03-29T00:59:59.000Z", "2026-03-29 01:59:59 CET"),
        ("2026-03-29T01:00:00.000Z", "2026-03-29 03:00:00 CEST"),
        ("2026-03-29T02:30:00.000Z", "2026-03-29 04:30:00 CEST"),
        # 2026-10-25, the last Sunday of October: 02:00..03:00 local happens twice.
        ("2026-10-25T00:30:00.000Z", "2026-10-25 02:30:00 CEST"),
        ("2026-10-25T01:30:00.000Z", "2026-10-25 02:30:00 CET"),
        ("2026-10-25T02:30:00.000Z", "2026-10-25 03:30:00 CET"),
        ("2026-12-06T18:27:37.412Z", "2026-12-06 19:27:37 CET"),
    ],
)
def test_berlin_across_daylight_saving(utc: str, shown: str) -> None:
    assert local_text(utc, BERLIN) == shown


def test_the_missing_spring_hour_is_never_printed_and_the_repeated_one_never_alike() -> None:
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    spring = [local_text(stamp(start + timedelta(minutes=m)), BERLIN) for m in range(240)]
    assert not [s for s in spring if s and s.startswith("2026-03-29 02:")]
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    autumn = [local_text(stamp(start + timedelta(minutes=m)), BERLIN) for m in range(240)]
    assert len(set(autumn)) == len(autumn)  # 02:xx CEST, then 02:xx CET: never the same text


def test_zone_marks_without_letters_and_utc() -> None:
    assert local_text("2026-12-06T18:27:37Z", UTC) == "2026-12-06 18:27:37 UTC"
    # Sao Paulo's abbreviation is "-03": shown as an offset
    assert local_text("2026-12-06T18:27:37Z", ZoneInfo("America/Sao_Paulo")) == (
        "2026-12-06 15:27:37 -03:00"
    )
    assert local_text("not a time", BERLIN) is None
    assert local_text("2026-12-06T18:27:37", BERLIN) is None  # no zone: not a journal stamp


def test_default_is_the_systems_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_text("2026-07-01T10:00:00Z", zone("")) == "2026-07-01 12:00:00 CEST"
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/Asia/Tokyo")
    assert local_text("2026-07-01T10:00:00Z", zone("")) == "2026-07-01 19:00:00 JST"
    assert local_text("2026-07-01T10:00:00Z", zone("America/New_York")) == (
        "2026-07-01 06:00:00 EDT"
    )


def test_unknown_zone_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text('[terminal]\nstore_id = "s"\nterminal_id = "t"\ntimezone = "Berlin"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: terminal.timezone: unknown time zone 'Berlin'")
    assert "Europe/Berlin" in text and "tzdata" in text


class Entry:
    seq = 7
    receipt_no = "S1-T1-000007"
    created_at = "2026-10-25T01:30:00.000Z"
    hash = bytes(32)
    sale_json = (
        b'{"id":"x","currency":"EUR","total":100,'
        b'"lines":[{"sku":"a","qty":1,"amount":100}],"payments":[{"method":"cash","amount":100}]}'
    )


def test_receipt_prints_the_local_time_with_its_zone() -> None:
    document = sale_document("S1", "T1", Entry(), BERLIN)
    assert document["created_at"] == Entry.created_at  # the stamp itself stays UTC
    text = receipt_text(document, ReceiptLayout(), copy=False)
    assert "2026-10-25 02:30:00 CET" in text
    assert "UTC" not in text
