"""A sale's currency is an active ISO 4217 currency; the refusal says what the code is."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edged.errors import ValidationError
from edged.iso4217 import CURRENCIES, NOT_FOR_SALES
from edged.sale import validate_sale


def sale_in(currency: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": currency,
        "total": 100,
        "lines": [{"sku": "A", "qty": 1, "amount": 100}],
        "payments": [{"method": "cash", "amount": 100}],
    }


def currency_problem(currency: Any) -> str:
    with pytest.raises(ValidationError) as info:
        validate_sale(sale_in(currency))
    (problem,) = info.value.problems
    assert problem.path == "sale.currency"
    return problem.problem


@pytest.mark.parametrize("code", ["EUR", "USD", "CHF", "JPY", "XAF", "XOF", "XCD", "XCG", "XPF"])
def test_currencies_in_use_are_accepted(code: str) -> None:
    validate_sale(sale_in(code))


def test_every_listed_currency_is_accepted_and_the_list_is_iso_4217_list_one() -> None:
    for code in CURRENCIES:
        validate_sale(sale_in(code))
    assert len(CURRENCIES) + len(NOT_FOR_SALES) == 179  # list one of 2025-05-12
    assert not CURRENCIES & NOT_FOR_SALES.keys()


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("XAU", "is a precious metal in ISO 4217"),
        ("XTS", "is the code reserved for testing"),
        ("XXX", 'is the code for "no currency"'),
        ("CLF", "is a fund code"),
        ("XDR", "is a unit of account"),
        ("XBA", "is a bond market unit"),
    ],
)
def test_other_active_codes_say_what_they_are(code: str, what: str) -> None:
    problem = currency_problem(code)
    assert f'"{code}" {what}' in problem
    assert "use the code of the currency of the sale, such as EUR" in problem


@pytest.mark.parametrize("code", ["ABC", "DEM", "ZWL", "QQQ"])
def test_unknown_and_withdrawn_codes_are_refused(code: str) -> None:
    problem = currency_problem(code)
    assert problem.startswith(f'"{code}" is not an active ISO 4217 currency code; use the code')


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("eur", '"eur"'),
        ("EURO", '"EURO"'),
        ("", '""'),
        (978, "a number"),
        (True, "a boolean"),
        ({}, "an object"),
        (None, "null"),
        ("É€R", '"É€R"'),
        ("x" * 50, "a longer string"),
    ],
)
def test_malformed_codes_say_the_expected_form(value: Any, got: str) -> None:
    assert currency_problem(value) == (
        f"must be an ISO 4217 currency code of three capitals such as EUR, got {got}"
    )
