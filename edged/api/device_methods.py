"""The local API's device methods: printer, drawer, card payments, and the demo's sim scanner."""

from __future__ import annotations

from typing import Any

from edged.api.methods_base import Method, Session, id_param, invalid_params
from edged.api.services import Services
from edged.errors import Problem
from edged.iso4217 import currency_problem

MAX_WAIT_S = 60.0
MAX_SLIP_LINES = 500
MAX_LINE_CHARS = 200
MAX_AMOUNT = 10**12  # minor units; a typo guard, not a business limit


def _slip(receipt: Any) -> dict[str, Any]:
    """Check a free text slip: `{title?, lines: [str], code?}`."""
    if not isinstance(receipt, dict):
        raise invalid_params([Problem("receipt", "must be an object {title?, lines, code?}")])
    problems = [
        Problem(f"receipt.{key}"[:60], "is not a slip field; fields: title, lines, code")
        for key in receipt
        if key not in ("title", "lines", "code")
    ]
    lines = receipt.get("lines")
    if not isinstance(lines, list) or len(lines) > MAX_SLIP_LINES:
        problems.append(
            Problem("receipt.lines", f"must be an array of at most {MAX_SLIP_LINES} strings")
        )
    else:
        problems += [
            Problem(f"receipt.lines[{i}]", f"must be a string of at most {MAX_LINE_CHARS} chars")
            for i, line in enumerate(lines)
            if not isinstance(line, str) or len(line) > MAX_LINE_CHARS
        ]
    for key in ("title", "code"):
        value = receipt.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_LINE_CHARS):
            problems.append(
                Problem(f"receipt.{key}", f"must be a string of at most {MAX_LINE_CHARS}")
            )
    if problems:
        raise invalid_params(problems)
    return {
        "kind": "text",
        "title": receipt.get("title"),
        "lines": lines,
        "code": receipt.get("code"),
    }


async def _printer_print(services: Services, session: Session, params: dict[str, Any]) -> Any:
    has_sale, has_receipt = "sale_id" in params, "receipt" in params
    if has_sale == has_receipt:
        raise invalid_params(
            [Problem("params", "give exactly one of sale_id (a committed sale) or receipt")]
        )
    wait_s = params.get("wait_s", 10.0)
    if (
        isinstance(wait_s, bool)
        or not isinstance(wait_s, int | float)
        or not (0 <= wait_s <= MAX_WAIT_S)
    ):
        raise invalid_params([Problem("wait_s", f"must be a number of seconds, 0 to {MAX_WAIT_S}")])
    if has_sale:
        return await services.print(id_param(params, "sale_id", "sale id"), None, float(wait_s))
    return await services.print(None, _slip(params["receipt"]), float(wait_s))


async def _printer_status(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return services.printer_status()


async def _drawer_open(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.open_drawer()


def _terms(params: dict[str, Any]) -> tuple[str, int, str]:
    payment_id = id_param(params, "id", "payment id")
    amount, currency = params["amount"], params["currency"]
    problems = []
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        problems.append(Problem("amount", "must be a positive integer number of minor units"))
    if (problem := currency_problem(currency)) is not None:
        problems.append(Problem("currency", problem))
    if problems:
        raise invalid_params(problems)
    return payment_id, amount, currency


async def _payment_start(services: Services, session: Session, params: dict[str, Any]) -> Any:
    terms = _terms(params)  # checked before the service is asked
    return await services.payment_start(*terms)


async def _payment_refund(services: Services, session: Session, params: dict[str, Any]) -> Any:
    terms = _terms(params)
    return await services.payment_refund(*terms)


async def _payment_reverse(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.payment_reverse(
        id_param(params, "id", "payment id"), id_param(params, "payment_id", "payment id")
    )


async def _payment_end_of_day(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.payment_end_of_day()


async def _payment_cancel(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.payment_cancel(id_param(params, "id", "payment id"))


async def _payment_get(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.payment_get(id_param(params, "id", "payment id"))


async def _sim_scan(services: Services, session: Session, params: dict[str, Any]) -> Any:
    code, symbology = params["code"], params.get("symbology")
    if not isinstance(code, str) or not code or len(code) > MAX_LINE_CHARS:
        raise invalid_params([Problem("code", f"must be a string of 1 to {MAX_LINE_CHARS}")])
    if symbology is not None and not isinstance(symbology, str):
        raise invalid_params([Problem("symbology", "must be an AIM identifier such as ']E0'")])
    return await services.sim_scan(code, symbology)


DEVICE_METHODS = (
    Method("printer.print", ("sale_id", "receipt", "wait_s"), frozenset(), _printer_print),
    Method("printer.status", (), frozenset(), _printer_status),
    Method("drawer.open", (), frozenset(), _drawer_open),
    Method(
        "payment.start",
        ("id", "amount", "currency"),
        frozenset({"id", "amount", "currency"}),
        _payment_start,
    ),
    Method(
        "payment.refund",
        ("id", "amount", "currency"),
        frozenset({"id", "amount", "currency"}),
        _payment_refund,
    ),
    Method(
        "payment.reverse",
        ("id", "payment_id"),
        frozenset({"id", "payment_id"}),
        _payment_reverse,
    ),
    Method("payment.end_of_day", (), frozenset(), _payment_end_of_day),
    Method("payment.cancel", ("id",), frozenset({"id"}), _payment_cancel),
    Method("payment.get", ("id",), frozenset({"id"}), _payment_get),
    Method("sim.scan", ("code", "symbology"), frozenset({"code"}), _sim_scan),
)
