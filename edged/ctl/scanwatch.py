"""`edgectl diag scanner --watch SECONDS`: every scan the daemon sees, live, as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from edged.ctl import output, paths, rpc
from edged.ctl.errors import EXIT_OK, EXIT_PROBLEM, CtlError

# States in which no scan can come: `diag scanner` says so at once instead of watching.
CANNOT_SCAN = frozenset({"absent", "error"})


def _printable(code: str) -> str:
    """Control characters visible: GS1's group separator as <GS>, others as \\xNN."""
    return "".join(
        "<GS>" if ch == "\x1d" else ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in code
    )


def scan_line(scan: dict[str, Any]) -> str:
    verdict = "valid" if scan["valid"] else f"INVALID ({scan.get('problem') or 'check failed'})"
    line = f"{scan['symbology']:<14} {verdict:<7} {_printable(scan['code'])}"
    if scan.get("gs1"):
        line += "  gs1 " + " ".join(f"({ai}){value}" for ai, value in scan["gs1"].items())
    return line


def _say(args: argparse.Namespace, kind: str, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps({"type": kind, "data": data}, ensure_ascii=False), flush=True)
    else:
        print(text, flush=True)


async def _watch(args: argparse.Namespace) -> int:
    """Print scans until the time is up or --count scans came; returns how many came."""
    seen = 0
    async with rpc.connect(paths.socket_path(args)) as client:
        await rpc.call(client, "subscribe", {"events": ["scanner.scan", "device"]})
        status = await rpc.call(client, "status")
        scanner = (status.get("devices") or {}).get("scanner")
        if scanner is None:
            raise CtlError("no scanner is configured; add [devices.scanner] to the config")
        if scanner["state"] in CANNOT_SCAN:
            detail = f" ({scanner['detail']})" if scanner["detail"] else ""
            raise CtlError(
                f"the scanner is {scanner['state']}{detail}: no scan can arrive, so not "
                "watching; check its cable and `edgectl status`, then try again",
                EXIT_PROBLEM,
            )
        _say(
            args,
            "watching",
            {"seconds": args.watch, "scanner": scanner},
            f"scanner {scanner['state']}"
            + (f" ({scanner['detail']})" if scanner["detail"] else "")
            + f"; watching for {args.watch:g} s, scan something (Ctrl-C stops)",
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.watch):
                async for event in client.events():
                    data = event["data"]
                    if event["type"] == "scanner.scan":
                        seen += 1
                        _say(args, "scan", data, scan_line(data))
                        if args.count is not None and seen >= args.count:
                            break
                    elif data.get("name") == "scanner":
                        detail = f" ({data['detail']})" if data["detail"] else ""
                        _say(args, "device", data, f"scanner now {data['state']}{detail}")
    return seen


def run(args: argparse.Namespace) -> int:
    if args.watch <= 0:
        raise CtlError("--watch takes a positive number of seconds")
    try:
        seen = asyncio.run(_watch(args))
    except KeyboardInterrupt:
        return EXIT_OK
    if not args.json:
        print(f"{seen} scan{'s' if seen != 1 else ''} seen", file=sys.stderr)
    if seen == 0:
        output.warn(
            "no scan arrived: check `edgectl status` (the scanner must be ready), the scanner's "
            "interface mode (serial/USB-CDC or keyboard) and its suffix setting"
        )
        return EXIT_PROBLEM
    return EXIT_OK
