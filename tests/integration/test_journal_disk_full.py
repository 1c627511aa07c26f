"""A real `edged run` whose journal sits on a full disk (a small tmpfs filled to the last byte):
commits answer -32001, status stays true, SIGTERM exits, and nothing committed is lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from edged.api.codes import JOURNAL_FULL
from edged.client import ApiClient, ApiError
from edged.journal.verify import verify_journal
from tests.support.daemon import DaemonProcess
from tests.support.sales import cash_sale
from tests.support.tmpfs import fill, free, small_tmpfs

STOP_HANG_S = 20  # a hang detector (TimeoutStopSec is 30), not a performance bound


async def test_daemon_on_a_full_disk_answers_stops_and_keeps_every_sale(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size_kib=1024) as disk:
        daemon = DaemonProcess(tmp_path / "run", journal=disk / "journal.db")
        daemon.start()
        try:
            await full_disk_then_sigterm_then_space(daemon, disk)
        finally:
            daemon.kill()


async def full_disk_then_sigterm_then_space(daemon: DaemonProcess, disk: Path) -> None:
    confirmed: dict[str, tuple[int, str]] = {}
    sales = [cash_sale() for _ in range(20)]
    async with ApiClient(daemon.socket) as client:
        for s in sales:
            result = await client.call("sale.commit", {"sale": s})
            confirmed[s["id"]] = (result["seq"], result["receipt_no"])
        fill(disk)
        new = cash_sale(pad=3000)
        retried, failed = await asyncio.gather(
            client.call("sale.commit", {"sale": sales[0]}),
            client.call("sale.commit", {"sale": new}),
            return_exceptions=True,
        )
        assert isinstance(retried, dict), retried  # on the old code: a 30 s hang, no answer
        assert retried["duplicate"] and retried["seq"] == confirmed[sales[0]["id"]][0]
        assert isinstance(failed, ApiError) and failed.code == JOURNAL_FULL, failed
        assert "disk full" in str(failed) and "retry with the same id" in str(failed)
        with pytest.raises(ApiError) as again:  # the writer is still there to answer
            await client.call("sale.commit", {"sale": cash_sale()})
        assert again.value.code == JOURNAL_FULL
        status = await client.call("status")
        assert status["journal"]["last_seq"] == len(sales)
        assert status["outbox"]["pending"] == len(sales)
        assert status["outbox"]["acked_upto"] == 0

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.proc.wait, STOP_HANG_S) == 0, daemon.log_tail()
    log = daemon.log.read_text()
    assert "journal_checkpoint_failed" in log and "daemon_stopped" in log

    free(disk)
    daemon.start()
    async with ApiClient(daemon.socket) as client:
        for sale_id, (seq, receipt_no) in confirmed.items():
            got = await client.call("sale.get", {"id": sale_id})
            assert (got["seq"], got["receipt_no"]) == (seq, receipt_no)
        retried_new = await client.call("sale.commit", {"sale": new})
        assert (retried_new["seq"], retried_new["duplicate"]) == (len(sales) + 1, False)
    assert daemon.terminate() == 0
    report = verify_journal(daemon.journal)
    assert (report.last_seq, report.entries) == (len(sales) + 1, len(sales) + 1)
