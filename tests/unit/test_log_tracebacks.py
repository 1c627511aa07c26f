"""Logged tracebacks carry no local variables (a codec's locals hold raw card data)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import structlog

from edged import log as edged_log
from edged import supervise
from edged.devices.payment.zvt.apdu import Apdu
from edged.devices.payment.zvt.errors import ZvtProtocolError
from edged.devices.payment.zvt.fields import var_header
from edged.devices.payment.zvt.messages import parse_status_information
from edged.supervise import RestartPolicy, Supervisor

PAN = "4111111111111111"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The daemon's logging configuration (JSON lines: not a TTY) writing into a buffer."""
    config = structlog.get_config()
    monkeypatch.delenv(edged_log.LOCALS_ENV, raising=False)
    stream = io.StringIO()
    edged_log.configure("info", stream)
    # module loggers may have cached an earlier configuration: give this one a fresh logger
    monkeypatch.setattr(supervise, "log", structlog.get_logger("edged.supervise"))
    yield stream
    structlog.configure(**config)


def status_with_a_bad_pan_nibble() -> Apdu:
    """ZVT status information whose PAN field (BMP 22) has a bad nibble after the full PAN."""
    pan = bytes.fromhex(PAN + "A1")
    return Apdu(0x04, 0x0F, b"\x22" + var_header(len(pan), 2) + pan)


def decode_and_log_failure() -> None:
    """The payment service's way: an unexpected decode failure is logged with its traceback."""
    try:
        parse_status_information(status_with_a_bad_pan_nibble())
    except ZvtProtocolError:
        structlog.get_logger("edged.devices.payment.service").exception(
            "payment_driver_failed", payment_id="pay-1"
        )


def assert_no_pan(text: str) -> None:
    assert PAN not in "".join(ch for ch in text if ch.isdigit())


def test_a_failed_pan_decode_logs_no_pan(captured: io.StringIO) -> None:
    decode_and_log_failure()
    event = json.loads(captured.getvalue())
    assert event["event"] == "payment_driver_failed"
    frames = event["exception"][0]["frames"]
    assert any(frame["name"] == "_decode_pan" for frame in frames)
    assert all("locals" not in frame for frame in frames)
    assert_no_pan(captured.getvalue())


def test_locals_only_with_the_debug_switch(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch works, which also shows the test above would see a PAN in the locals."""
    monkeypatch.setenv(edged_log.LOCALS_ENV, "1")
    edged_log.configure("info", captured)
    decode_and_log_failure()
    assert PAN in captured.getvalue()


async def fail_once_under_a_supervisor(attempt: Callable[[], Awaitable[None]]) -> Supervisor:
    """Run `attempt` as the collector component until its first failure is logged."""
    failed = asyncio.Event()
    told: list[str] = []
    supervisor = Supervisor(
        "collector",
        attempt,
        policy=RestartPolicy(min_s=0.001, max_s=0.002),
        on_failure=lambda error: (told.append(error), failed.set()),
    )
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(failed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert told == [supervisor.last_error]
    return supervisor


def component_failures(log: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines()]
    return [e for e in lines if e["event"] == "component_failed"]


async def test_a_failed_component_logs_no_locals(captured: io.StringIO) -> None:
    """The collector holding whole sales when it fails: `component_failed` shows none of them."""

    async def attempt() -> None:
        sale: dict[str, Any] = {"lines": [{"name": f"gift card {PAN}"}]}
        raise RuntimeError(f"cannot store {len(sale)} sale")

    await fail_once_under_a_supervisor(attempt)
    failures = component_failures(captured.getvalue())
    assert failures and failures[0]["component"] == "collector"
    assert "exception" in failures[0]
    assert_no_pan(captured.getvalue())


async def test_a_failed_components_message_is_masked_in_its_error_field(
    captured: io.StringIO,
) -> None:
    """`component_failed` also names the exception in `error`, outside the traceback."""

    async def attempt() -> None:
        raise RuntimeError(f"cannot store gift card {PAN}")

    supervisor = await fail_once_under_a_supervisor(attempt)
    failures = component_failures(captured.getvalue())
    assert failures[0]["error"] == "RuntimeError: cannot store gift card ################"
    assert_no_pan(captured.getvalue())
    # what `status` says of it (and so `edgectl status`, the watchdog's STATUS= and a support
    # bundle): masked too
    assert supervisor.last_error == failures[0]["error"]


@pytest.mark.parametrize("field", ["error", "problem", "reason", "detail"])
def test_exception_messages_in_free_text_fields_are_masked(
    captured: io.StringIO, field: str
) -> None:
    """The way most call sites log a failure: `error=str(exc)` (or problem, reason, detail)."""
    try:
        raise ValueError(f"unexpected field {PAN}")
    except ValueError as exc:
        structlog.get_logger("t").warning("failed", **{field: str(exc), "seq": 12345678901234})
    event = json.loads(captured.getvalue())
    assert event[field] == "unexpected field ################"
    assert event["seq"] == 12345678901234  # ids and counts in their own fields are kept


def test_digit_runs_in_exception_messages_are_masked(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"unexpected field {PAN}")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    assert "unexpected field ################" in captured.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_console_shows_no_locals_either(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGED_LOG_FORMAT", raising=False)
    terminal = Terminal()
    edged_log.configure("info", terminal)
    decode_and_log_failure()
    assert "_decode_pan" in terminal.getvalue()  # the traceback is there
    assert_no_pan(terminal.getvalue())


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_the_console_masks_exception_messages(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch, rich: bool
) -> None:
    """Grouped as rich would colour each group apart; without rich (a till) the plain one."""
    monkeypatch.delenv("EDGED_LOG_FORMAT", raising=False)
    if not rich:
        monkeypatch.setitem(sys.modules, "rich", None)  # find_spec says it is not there
    terminal = Terminal()
    edged_log.configure("info", terminal)
    try:
        raise ValueError(f"unexpected field {PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]}")
    except ValueError as exc:
        structlog.get_logger("t").exception("failed", error=str(exc))
    assert "ValueError" in terminal.getvalue()  # the traceback is there
    assert_no_pan(terminal.getvalue())
