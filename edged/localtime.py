"""The store's local time, for people: receipts and edgectl. The journal, the wire and the
collector stay UTC; only what a shopper, a tax inspector or a technician reads is local."""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SYSTEM_ZONE_FILE = Path("/etc/localtime")


def zone(name: str) -> tzinfo:
    """The IANA zone `name` ("Europe/Berlin"), or the system's zone when `name` is empty.

    Raises ZoneInfoNotFoundError (a KeyError) or ValueError for a name that is not a zone.
    """
    return ZoneInfo(name) if name else system_zone()


def system_zone() -> tzinfo:
    """TZ if it names a zone (or a zone file), else /etc/localtime, else UTC."""
    tz = os.environ.get("TZ", "").removeprefix(":")
    if tz:
        try:
            if tz.startswith("/"):
                with open(tz, "rb") as f:
                    return ZoneInfo.from_file(f, key=tz)
            return ZoneInfo(tz)
        except (OSError, ValueError, ZoneInfoNotFoundError):
            pass  # a POSIX rule such as "CET-1CEST": the system file says the same
    try:
        with SYSTEM_ZONE_FILE.open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def _offset(moment: datetime) -> str:
    text = moment.strftime("%z")  # "+0100"
    return f"{text[:3]}:{text[3:]}" if text else "+00:00"


def local_text(timestamp: str, where: tzinfo) -> str | None:
    """An RFC 3339 stamp as "2026-03-29 03:30:00 CEST" in `where`; None if it is not one.

    The zone's abbreviation (or its UTC offset when it has none, or when both sides of a
    daylight-saving change share it) makes every time unambiguous, the repeated autumn hour
    included.
    """
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    local = moment.astimezone(where)
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        name = _offset(local)
    else:
        other = local.replace(fold=1 - local.fold)
        if other.utcoffset() != local.utcoffset() and other.tzname() == name:
            name = f"{name} {_offset(local)}"
    return f"{local:%Y-%m-%d %H:%M:%S} {name}"
