"""Sale validation: every problem names its JSON path (invariants 5, 6, 9)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edged.errors import ValidationError
from edged.sale import validate_sale


def good_sale(**changes: Any) -> dict[str, Any]:
    sale: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 350,
        "lines": [
            {"sku": "4006381333931", "qty": 1, "amount": 200, "unit_price": 200},
            {"sku": "BANANA", "qty": "0.350", "amount": 150, "discount": 0},
        ],
        "payments": [
            {"method": "card", "amount": 300, "masked_pan": "411111******1111", "scheme": "visa"},
            {"method": "cash", "amount": 50},
        ],
        "meta": {"cashier": "anna", "taxes": [{"rate": "19.00", "tax": 32}]},
    }
    sale.update(changes)
    return sale


def problems(sale: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        validate_sale(sale)
    return {p.path: p.problem for p in info.value.problems}


def test_good_sale_passes_unchanged() -> None:
    sale = good_sale()
    assert validate_sale(sale) is sale


def test_float_money_names_the_path() -> None:
    sale = good_sale()
    sale["lines"].append({"sku": "X", "qty": 1, "amount": 1.5})
    found = problems(sale)
    assert found["sale.lines[2].amount"] == ("must be an integer number of minor units, got 1.5")


def test_money_anywhere_must_be_integer() -> None:
    sale = good_sale()
    sale["meta"]["taxes"][0]["tax"] = 3.2
    assert "sale.meta.taxes[0].tax" in problems(sale)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"id": "not-a-uuid"}, "sale.id"),
        ({"currency": "eur"}, "sale.currency"),
        ({"total": "350"}, "sale.total"),
        ({"total": True}, "sale.total"),
        ({"lines": []}, "sale.lines"),
        ({"lines": "x"}, "sale.lines"),
        ({"payments": [{"method": "cash"}]}, "sale.payments[0].amount"),
        ({"meta": []}, "sale.meta"),
        ({"total": 2**60}, "sale.total"),
    ],
)
def test_wrong_fields(changes: dict[str, Any], path: str) -> None:
    assert path in problems(good_sale(**changes))


def test_missing_fields_are_reported_together() -> None:
    found = problems({"lines": [{}]})
    for path in (
        "sale.id",
        "sale.currency",
        "sale.total",
        "sale.lines[0].sku",
        "sale.lines[0].qty",
        "sale.lines[0].amount",
        "sale.payments",
    ):
        assert found[path]


def test_payments_must_add_up() -> None:
    found = problems(good_sale(total=351))
    assert found["sale.payments"] == "amounts add up to 350, but sale.total is 351"


@pytest.mark.parametrize("qty", [1.5, "1,5", "abc", None, [1]])
def test_bad_quantities(qty: Any) -> None:
    sale = good_sale()
    sale["lines"][0]["qty"] = qty
    assert "sale.lines[0].qty" in problems(sale)


@pytest.mark.parametrize("key", ["pan", "track2", "cvv", "PAN"])
def test_card_secrets_are_refused(key: str) -> None:
    sale = good_sale()
    sale["payments"][0][key] = "4111111111111111"
    assert f"sale.payments[0].{key}" in problems(sale)


def test_full_card_number_in_a_payment_field_is_refused() -> None:
    sale = good_sale()
    sale["payments"][0]["reference"] = "card 4111111111111111 approved"
    assert "full card number" in problems(sale)["sale.payments[0].reference"]


def test_barcodes_outside_payments_are_fine() -> None:
    sale = good_sale()
    sale["lines"][0]["sku"] = "4001092815905"  # a GTIN-13 that happens to be Luhn-valid
    validate_sale(sale)


def test_masked_pan_must_be_masked() -> None:
    sale = good_sale()
    sale["payments"][0]["masked_pan"] = "4111111111111111"
    assert "sale.payments[0].masked_pan" in problems(sale)
    sale["payments"][0]["masked_pan"] = "4111111111**1111"
    assert "sale.payments[0].masked_pan" in problems(sale)
    sale["payments"][0]["masked_pan"] = "************1111"  # only the last 4: fine
    validate_sale(sale)


def test_not_an_object() -> None:
    assert problems([1]) == {"sale": "must be an object, got an array"}


def test_deep_nesting_is_a_validation_error() -> None:
    deep: Any = "x"
    for _ in range(3000):
        deep = {"a": deep}
    assert "nested deeper" in problems(good_sale(meta=deep))["sale.meta" + ".a" * 32]
