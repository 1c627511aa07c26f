"""Wall-clock timestamps as the contracts spell them."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now_iso() -> str:
    """Now as RFC 3339 UTC with milliseconds, e.g. 2026-11-23T09:41:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
