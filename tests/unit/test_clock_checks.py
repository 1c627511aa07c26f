"""The store's clock reaches the terminal (each ack's `at`); jumps while running are logged."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

from structlog.testing import capture_logs

from edged.clockwatch import ClockWatch
from edged.ctl.doctor import _clock
from edged.journal import Journal
from tests.support.sales import cash_sale


def test_a_clock_that_jumps_back_is_logged_and_drift_is_not() -> None:
    watch = ClockWatch(wall=1000.0, mono=50.0)
    with capture_logs() as logs:
        assert watch.check(wall=1005.5, mono=55.0) == 0.5  # NTP slewing: no jump
        assert watch.check(wall=1000.0, mono=60.0) == -10.5  # set back by 10.5 s
        assert watch.check(wall=4600.0, mono=65.0) == 3595.0
    assert [(e["event"], e["log_level"], e["by_s"]) for e in logs] == [
        ("clock_jumped_back", "warning", 10.5),
        ("clock_jumped_forward", "info", 3595.0),
    ]


async def test_doctor_judges_this_clock_against_the_stores(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await Journal.open(path, store_id="S1", terminal_id="T1")
    await j.commit(cash_sale())
    await j.close()
    far = _clock(str(path), {"clock": {"offset_s": -3600.0}}, UTC)
    assert far.level == "FAIL"
    assert "60m" in far.found and "behind the store's clock" in far.found
    near = _clock(str(path), {"clock": {"offset_s": 12.0}}, UTC)
    assert (near.level, "ahead of the store's clock" in near.found) == ("WARN", True)
    fine = _clock(str(path), {"clock": {"offset_s": 0.4}}, ZoneInfo("Europe/Berlin"))
    assert fine.level in ("OK", "WARN")  # WARN only if NTP is off on this machine
    assert "of the store's clock (+0.4 s)" in fine.found
    # the times in the store's zone, as edgectl status shows them; never the raw UTC stamp
    assert re.match(r"now \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T;", fine.found), fine.found
    assert re.search(r"newest sale \(seq 1\) at [-\d]+ [:\d]+ CES?T;", fine.found), fine.found
    unknown = _clock(str(path), None, UTC)
    assert "the store's clock was not compared" in unknown.found
