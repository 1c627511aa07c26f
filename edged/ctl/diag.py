"""`edgectl diag printer|drawer|payment`: one device, through the running daemon."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from edged.config import Config
from edged.ctl import output, paths, rpc
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError
from edged.devices.printer.layout import printer_facts
from edged.receipts import receipt_layout

# How long the daemon waits for the printed test page; below edged.client's call timeout.
TEST_PAGE_WAIT_S = 20.0
UNKNOWN_COLUMNS = 48  # without a config: wider than most rolls, so the wrap shows the width
CODEPAGE_SAMPLE = "€ äöü ß"


def ruler(columns: int) -> str:
    """`....+....1....+....2` exactly `columns` wide: one printed line if the width is right."""
    marks = []
    for i in range(1, columns + 1):
        marks.append(str(i // 10 % 10) if i % 10 == 0 else "+" if i % 5 == 0 else ".")
    return "".join(marks)


def build_test_page(status: dict[str, Any], cfg: Config | None) -> dict[str, Any]:
    """The slip of `diag printer --test-page`: date, terminal, code page, column ruler, code."""
    terminal = status["terminal"]
    printer = cfg.devices.printer if cfg else None
    if printer is not None:
        try:
            layout = receipt_layout(printer)
            columns = printer_facts(layout.profile, layout.codepage, layout.columns).columns
        except ValueError as exc:
            raise CtlError(f"[devices.printer]: {exc}") from None
        setting = f"{layout.codepage}, {columns} columns ({layout.profile})"
    else:
        columns, setting = UNKNOWN_COLUMNS, f"unknown (no config); ruler of {UNKNOWN_COLUMNS}"
    now = datetime.now().astimezone()
    return {
        "title": "edgectl test page",
        "lines": [
            f"date: {now:%Y-%m-%d %H:%M:%S %Z}",
            f"      {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
            f"terminal: {terminal['store_id']} / {terminal['terminal_id']}",
            f"edged {status.get('version', '?')}",
            f"code page: {setting}",
            f"code page test: {CODEPAGE_SAMPLE}",
            "column ruler:",
            ruler(columns),
        ],
        "code": f"EDGECTL-TEST-{terminal['store_id']}-{terminal['terminal_id']}",
    }


# A test page goes only to a printer in these states: a job for any other is kept durably and
# would print whenever the printer comes back, maybe days later, with nobody waiting for it.
PRINTS_NOW = frozenset({"ready", "busy"})


async def _printer(sock: str, cfg: Config | None, print_test: bool) -> dict[str, Any]:
    async with rpc.connect(sock) as client:
        printer = await rpc.call(client, "printer.status")
        result: dict[str, Any] = {"printer": printer, "test_page": None}
        if print_test and printer["state"] not in PRINTS_NOW:
            detail = f" ({printer['detail']})" if printer.get("detail") else ""
            raise CtlError(
                f"the printer is {printer['state']}{detail}: no test page was sent (it would "
                "print whenever the printer comes back); check its power, cable and "
                "`edgectl status`, then try again",
                EXIT_PROBLEM,
            )
        if print_test:
            status = await rpc.call(client, "status")
            slip = build_test_page(status, cfg)
            job = await rpc.call(
                client, "printer.print", {"receipt": slip, "wait_s": TEST_PAGE_WAIT_S}
            )
            result["printer"] = job["printer"]
            result["test_page"] = {"job": job["job"], "state": job["state"], "slip": slip}
        return result


def printer(args: argparse.Namespace) -> int:
    result = asyncio.run(_printer(paths.socket_path(args), paths.config(args), args.test_page))
    status, page = result["printer"], result["test_page"]
    if args.json:
        output.emit_json(result)
    else:
        rows = [
            ("printer", status["state"] + (f" ({status['detail']})" if status["detail"] else "")),
            ("online", _known(status["online"])),
            ("paper", _known(status["paper"])),
            ("cover open", _known(status["cover_open"])),
            ("drawer open", _known(status["drawer_open"])),
            ("queued jobs", str(status["queued"])),
            ("last printed job", _known(status["last_printed_job"])),
        ]
        if page is not None:
            rows.append(("test page", f"job {page['job']}: {page['state']}"))
        print(output.pairs(rows))
    if page is not None and page["state"] != "printed":
        output.warn(
            f"the test page (job {page['job']}) is {page['state']}, not printed: "
            f"the printer is {status['state']}; it prints once the printer is ready"
        )
        return EXIT_PROBLEM
    return EXIT_OK if status["state"] == "ready" else EXIT_PROBLEM


def _known(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def drawer(args: argparse.Namespace) -> int:
    result = rpc.request(paths.socket_path(args), "drawer.open")
    seen = result["drawer_open"]
    if args.json:
        output.emit_json(result)
    else:
        kicked = f"drawer kicked (pin {result['pin']}, {result['pulse_ms']} ms)"
        if seen is None:
            print(f"{kicked}; no drawer sensor configured (drawer_sensor = false): look at it")
        elif seen:
            print(f"{kicked}: the sensor saw it open")
        else:
            print(f"{kicked}, but the sensor still reads closed")
    if seen is False:
        output.warn(
            "check the drawer cable at the printer, drawer_pin (2 or 5) and drawer_pulse_ms, "
            "and that the drawer is not locked"
        )
        return EXIT_PROBLEM
    return EXIT_OK


def payment(args: argparse.Namespace) -> int:
    status = rpc.request(paths.socket_path(args), "status")
    device = (status.get("devices") or {}).get("payment")
    if device is None:
        raise CtlError("no payment terminal is configured; add [devices.payment] to the config")
    if args.json:
        output.emit_json({"payment": device})
    else:
        detail = f" ({device['detail']})" if device.get("detail") else ""
        print(f"payment terminal: {device['state']}{detail}")
    if device["state"] != "ready":
        output.warn(
            "edged registers with the terminal and asks for its status on its own, over and "
            "over; not ready means it does not answer: check the cable, the terminal's ECR "
            "interface setting (ZVT or Concert), the framing and the password"
        )
        return EXIT_PROBLEM
    return EXIT_OK
