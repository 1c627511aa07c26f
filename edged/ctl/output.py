"""How edgectl prints: aligned tables for people, one JSON document for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from edged.devices.printer.layout import format_amount
from edged.localtime import local_text

CLOCK_SLACK_S = 60  # stamps this far ahead of now are tolerated (clock slew, NTP steps)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def pairs(rows: Sequence[tuple[str, str]]) -> str:
    """`key  value` lines with the keys padded to one width."""
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{key:<{width}}  {value}".rstrip() for key, value in rows)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> str:
    """Columns padded to their widest cell; the columns in `right` are right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def money(minor: int, currency: str) -> str:
    """12345 EUR -> "123.45 EUR"; integer arithmetic only."""
    return f"{format_amount(minor, currency)} {currency}"


def parse_time(timestamp: str) -> datetime:
    """An RFC 3339 timestamp as the journal and the API write it."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def seconds_since(timestamp: str) -> int:
    return int((datetime.now(UTC) - parse_time(timestamp)).total_seconds())


def duration(seconds: int) -> str:
    """A short human duration: 42s, 5m, 3h 20m, 2d 4h; negative means in the future."""
    if seconds < 0:
        return f"{duration(-seconds)} in the future"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def when(timestamp: str, where: tzinfo | None) -> str:
    """A UTC stamp in the store's zone `where` for people (as on the receipts); None: as is."""
    return (local_text(timestamp, where) if where else None) or timestamp


def ago(timestamp: str | None, where: tzinfo | None = None) -> str:
    if not timestamp:
        return "-"
    return f"{when(timestamp, where)} ({duration(seconds_since(timestamp))} ago)"


def size(n: int) -> str:
    """Bytes for people: 812 B, 1.4 MB, 2.0 GB (powers of 1000, as df -H)."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def warn(message: str) -> None:
    """A note for the person at the terminal that is not part of the output proper."""
    print(f"edgectl: {message}", file=sys.stderr)
