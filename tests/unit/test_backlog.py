"""The outbox severity's pure parts: thresholds, ages, and the config that sets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.backlog import WAKE_LATE_S, Severity, Thresholds, age_s
from edged.clock import utc_iso
from edged.config import load_config
from edged.errors import ConfigError

CONFIG = '[terminal]\nstore_id = "s1"\nterminal_id = "t1"\n[uplink]\nhost = "h"\n'


def test_severity_by_age() -> None:
    t = Thresholds(warn_after_s=900, alarm_after_s=86400)
    assert [t.severity(a) for a in (None, 0, 899.9, 900, 86399, 86400, 10**7)] == [
        Severity.OK,
        Severity.OK,
        Severity.OK,
        Severity.WARN,
        Severity.WARN,
        Severity.ALARM,
        Severity.ALARM,
    ]


def test_next_change_is_the_next_threshold_crossed() -> None:
    t = Thresholds(warn_after_s=900, alarm_after_s=3600)
    assert t.next_change_in(None) is None  # nothing waits: nothing can change by time
    assert t.next_change_in(100) == pytest.approx(800 + WAKE_LATE_S)
    assert t.next_change_in(900) == pytest.approx(2700 + WAKE_LATE_S)
    assert t.next_change_in(3600) is None  # alarm is the last


def test_age_is_never_negative_and_none_without_a_stamp() -> None:
    assert age_s(None, 1000.0) is None
    assert age_s(utc_iso(900.0), 1000.0) == 100.0
    assert age_s(utc_iso(1100.0), 1000.0) == 0.0  # a stamp ahead of this clock


def test_config_defaults_and_order(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text(CONFIG)
    uplink = load_config(path).uplink
    assert uplink is not None
    assert (uplink.outbox_warn_after_s, uplink.outbox_alarm_after_s) == (900.0, 14400.0)
    assert Thresholds() == Thresholds(uplink.outbox_warn_after_s, uplink.outbox_alarm_after_s)
    path.write_text(CONFIG + "outbox_warn_after_s = 3600\noutbox_alarm_after_s = 600\n")
    with pytest.raises(ConfigError, match=r"uplink.outbox_alarm_after_s: must be >= "):
        load_config(path)
