"""The offline-approval window: the later of the last end of day and local midnight."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edged.clock import parse_utc_iso
from edged.devices.payment.offline import OfflineTally, local_midnight_utc

BERLIN = ZoneInfo("Europe/Berlin")  # the store's zone (terminal.timezone), not the system's


def at(text: str) -> float:
    epoch = parse_utc_iso(text)
    assert epoch is not None
    return epoch


def offline(payment_id: str, amount: int, updated_at: str, **changes: Any) -> dict[str, Any]:
    record = {
        "id": payment_id,
        "kind": "payment",
        "state": "approved",
        "amount": amount,
        "updated_at": updated_at,
        "result": {"amount": amount, "authorisation": "offline"},
    }
    return {**record, **changes}


@pytest.mark.parametrize(
    ("now", "midnight"),
    [
        ("2026-12-07T10:00:00.000Z", "2026-12-06T23:00:00.000Z"),  # winter: UTC+1
        ("2026-07-07T10:00:00.000Z", "2026-07-06T22:00:00.000Z"),  # summer: UTC+2
        ("2026-03-29T10:00:00.000Z", "2026-03-28T23:00:00.000Z"),  # the day clocks go forward
        ("2026-10-25T22:30:00.000Z", "2026-10-24T22:00:00.000Z"),  # the day they go back
        ("2026-10-25T23:30:00.000Z", "2026-10-25T23:00:00.000Z"),  # and just after its end
    ],
)
def test_local_midnight_follows_daylight_saving(now: str, midnight: str) -> None:
    assert local_midnight_utc(at(now), BERLIN) == midnight


def test_the_window_starts_at_the_later_of_midnight_and_the_end_of_day() -> None:
    now = [at("2026-12-07T10:00:00.000Z")]
    tally = OfflineTally(BERLIN, clock=lambda: now[0])
    assert tally.report("EUR") is None  # nothing read from the journal yet
    tally.load(
        [
            offline("yesterday", 100, "2026-12-06T22:59:59.999Z"),
            offline("today", 200, "2026-12-06T23:00:00.000Z"),
            offline("online", 400, "2026-12-07T08:00:00.000Z", result={"amount": 400}),
            offline("refund", 800, "2026-12-07T08:00:00.000Z", kind="refund"),
            offline("declined", 1600, "2026-12-07T08:00:00.000Z", state="declined"),
        ]
    )
    assert tally.report("EUR") == {
        "count": 1,
        "total": 200,
        "currency": "EUR",
        "since": "2026-12-06T23:00:00.000Z",
    }
    assert tally.add(offline("later", 50, "2026-12-07T09:00:00.000Z"))
    tally.closed("2026-12-07T09:30:00.000Z")
    assert tally.report("EUR") == {
        "count": 0,
        "total": 0,
        "currency": "EUR",
        "since": "2026-12-07T09:30:00.000Z",
    }
    tally.add(offline("after", 70, "2026-12-07T09:45:00.000Z"))
    now[0] = at("2026-12-07T23:30:00.000Z")  # past the next local midnight
    report = tally.report("EUR")
    assert report is not None
    assert (report["count"], report["since"]) == (0, "2026-12-07T23:00:00.000Z")
