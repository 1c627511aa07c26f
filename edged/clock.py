"""Wall-clock timestamps as the contracts spell them: RFC 3339 UTC, milliseconds, "Z"."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_iso(epoch_s: float) -> str:
    """RFC 3339 UTC with milliseconds for a POSIX time, e.g. "2026-11-23T09:41:00.123Z"."""
    ms = int(epoch_s * 1000)
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def utc_now_iso() -> str:
    """The current UTC time in the journal's and the wire's format."""
    return utc_iso(time.time())


def parse_utc_iso(text: str) -> float | None:
    """The POSIX time of an RFC 3339 timestamp with a zone (as `utc_iso` writes), or None."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if parsed.tzinfo is None else parsed.timestamp()
