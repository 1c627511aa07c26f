"""The reference data methods: `article.lookup`, `refdata.status`, `refdata.use`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from edged.api.methods_base import Method, Session, invalid_params
from edged.api.services import Services
from edged.errors import Problem

MAX_BARCODE_CHARS = 64
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


async def _article_lookup(services: Services, session: Session, params: dict[str, Any]) -> Any:
    barcode = params["barcode"]
    if not isinstance(barcode, str) or not 1 <= len(barcode) <= MAX_BARCODE_CHARS:
        raise invalid_params(
            [Problem("barcode", f"must be a string of 1 to {MAX_BARCODE_CHARS} characters")]
        )
    return services.refdata.lookup(barcode)


async def _refdata_status(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return services.refdata.status()


async def _refdata_use(services: Services, session: Session, params: dict[str, Any]) -> Any:
    date = params.get("date")
    if date == "today":
        date = None
    if date is not None and not (isinstance(date, str) and _valid_date(date)):
        raise invalid_params(
            [Problem("date", 'must be a date YYYY-MM-DD, or "today" (or null) for today\'s')]
        )
    return await services.refdata.use(date)


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


REFDATA_METHODS = (
    Method("article.lookup", ("barcode",), frozenset({"barcode"}), _article_lookup),
    Method("refdata.status", (), frozenset(), _refdata_status),
    Method("refdata.use", ("date",), frozenset({"date"}), _refdata_use),
)
