"""Sale validation: every problem names its JSON path (invariants 5, 6, 9)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from edged.errors import ValidationError
from edged.sale import validate_sale
from tests.support.sales import uuid7


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


PAN = "4111111111111111"
AMEX = "378282246310005"
LONG_VISA = "4917610000000000003"  # 19 digits, beyond 2^53


def hide(sale: dict[str, Any], where: str, value: Any) -> str:
    """Put `value` somewhere in `sale`; the JSON path the refusal must name."""
    if where == "line name":
        sale["lines"][0]["name"] = value
        return "sale.lines[0].name"
    if where == "meta":
        sale["meta"]["note"] = value
        return "sale.meta.note"
    if where == "top level":
        sale["customer"] = value
        return "sale.customer"
    if where == "nested array":
        sale["meta"]["taxes"].append({"refs": ["a", ["b", value]]})
        return "sale.meta.taxes[1].refs[1][1]"
    if where == "key":
        sale["meta"]["refs"] = {"ok": 1, value: "x"}
        return "sale.meta.refs"
    if where == "currency":
        sale["currency"] = value
        return "sale.currency"
    assert where == "payment key"
    sale["payments"][1][value] = 1
    return "sale.payments[1]"


def assert_refused_unechoed(sale: dict[str, Any], path: str, secret: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_sale(sale)
    found = {p.path: p.problem for p in info.value.problems}
    assert "card data must not be stored" in found[path], found
    digits = "".join(ch for ch in secret if ch.isdigit())
    for text in [str(info.value), *found, *found.values()]:
        assert digits not in "".join(ch for ch in text if ch.isdigit()), text


@pytest.mark.parametrize("where", ["line name", "meta", "top level", "nested array", "key"])
@pytest.mark.parametrize(
    "secret",
    [
        PAN,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "3782 822463 10005",
        f"paid with {AMEX} thanks",
        LONG_VISA,
        f"%B{PAN}^DOE/JOHN^2512101000?",
        f";{PAN}=2512101000?",
        f"{PAN}D25121010000F",
    ],
)
def test_card_data_anywhere_is_refused_by_path_and_never_echoed(where: str, secret: str) -> None:
    sale = good_sale()
    path = hide(sale, where, secret)
    assert_refused_unechoed(sale, path, secret)


@pytest.mark.parametrize("where", ["line name", "meta", "top level", "nested array"])
@pytest.mark.parametrize("number", [int(PAN), int(AMEX), int(LONG_VISA), float(PAN)])
def test_a_pan_as_a_json_number_is_refused(where: str, number: float) -> None:
    sale = good_sale()
    path = hide(sale, where, number)
    assert_refused_unechoed(sale, path, str(int(number)))


def test_a_pan_as_the_currency_is_not_echoed() -> None:
    sale = good_sale()
    path = hide(sale, "currency", PAN)
    assert_refused_unechoed(sale, path, PAN)


@pytest.mark.parametrize("pan", ["4222222222222", "36227206271667"])
def test_13_and_14_digit_pans_are_refused_in_payments(pan: str) -> None:
    sale = good_sale()
    sale["payments"][0]["note"] = f"card {pan}"
    assert_refused_unechoed(sale, "sale.payments[0].note", pan)
    sale = good_sale()
    sale["payments"][0]["terminal_ref"] = int(pan)
    assert_refused_unechoed(sale, "sale.payments[0].terminal_ref", pan)
    sale = good_sale()
    assert_refused_unechoed(sale, hide(sale, "payment key", pan), pan)
    nestings = [([f"card {pan}"], "[0]"), ([["x", pan]], "[0][1]"), ([int(pan)], "[0]")]
    for nested, path in [*nestings, ([{"ref": pan}], "[0].ref")]:
        sale = good_sale()  # strings and numbers in arrays under payments are in payments
        sale["payments"][0]["refs"] = nested
        assert_refused_unechoed(sale, "sale.payments[0].refs" + path, pan)
    sale = good_sale()
    sale["lines"][0]["name"] = pan  # a GTIN-13/14 outside the payments
    validate_sale(sale)
    sale["meta"]["refs"] = [pan, [int(pan)]]  # and in arrays outside them
    validate_sale(sale)


def test_retail_data_everywhere_is_kept() -> None:
    sale = good_sale()
    sale["lines"][0].update(
        sku="4001092815905",  # GTIN-13, Luhn-valid
        gtin=4001092815905,
        scan="]C101040123451234561725010110ABC123\x1d21XYZ",
        name="Bio Vollmilch 3,5% 1 l (01)04012345123456(17)250101(10)ABC123",
    )
    sale["meta"].update(
        receipt="S042-T03-000123",
        phone="+49 151 2345 6789",
        order="ORD-2026-12-07-000000123456",
        order_no=12345678901234,
    )
    sale["meta"]["40010928159050"] = "a GTIN-14 as a key"
    validate_sale(sale)


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        ("id", "", 'must be a non-empty string, got ""'),
        ("id", 7, "must be a non-empty string, got 7"),
        ("id", None, "must be a non-empty string, got null"),
        ("sku", "", 'must be a non-empty string, got ""'),
        ("sku", ["X"], "must be a non-empty string, got an array"),
        ("method", "", 'must be a non-empty string, got ""'),
        ("method", {"m": 1}, "must be a non-empty string, got an object"),
    ],
)
def test_ids_skus_and_methods_are_non_empty_strings(where: str, value: Any, problem: str) -> None:
    sale = good_sale()
    path = {"id": "sale.id", "sku": "sale.lines[0].sku", "method": "sale.payments[1].method"}
    holder = {"id": sale, "sku": sale["lines"][0], "method": sale["payments"][1]}[where]
    holder[where] = value
    assert problems(sale) == {path[where]: problem}


def test_a_payment_without_method_is_refused() -> None:
    sale = good_sale()
    del sale["payments"][1]["method"]
    assert problems(sale) == {"sale.payments[1].method": "is required"}


def test_items_of_lines_and_payments_must_be_objects() -> None:
    sale = good_sale()
    sale["lines"].append("BANANA")
    sale["payments"].insert(0, 50)
    assert problems(sale) == {
        "sale.lines[2]": 'must be an object, got "BANANA"',
        "sale.payments[0]": "must be an object, got 50",
    }


def test_payments_may_be_empty_for_a_zero_total_but_must_be_an_array() -> None:
    sale = good_sale(total=0, payments=[])
    assert validate_sale(sale) is sale
    assert problems(good_sale(total=0, payments={})) == {
        "sale.payments": "must be an array, got an object"
    }
    assert problems(good_sale(payments=[])) == {
        "sale.payments": "amounts add up to 0, but sale.total is 350"
    }


def test_lists_nested_past_the_depth_limit_are_refused() -> None:
    deep: Any = ["x"]
    for _ in range(40):
        deep = [deep]
    found = problems(good_sale(meta={"a": deep}))
    assert list(found.values()) == ["nested deeper than 32 levels"]
    assert next(iter(found)) == "sale.meta.a" + "[0]" * 31
    shallow: Any = ["x"]
    for _ in range(29):
        shallow = [shallow]
    validate_sale(good_sale(meta={"a": shallow}))  # 32 levels below sale: allowed


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, None),
        (1.25, None),
        (float("nan"), "nan is not a number JSON can carry"),
        (float("inf"), "inf is not a number JSON can carry"),
        (2**60, "integer of 19 digits is beyond ±2^53-1, which JSON cannot carry exactly"),
        (10**20, None),  # how RFC 8785 writes the double 1e20: a sale read back commits again
    ],
)
def test_null_floats_and_big_numbers_inside_payments(value: Any, problem: str | None) -> None:
    sale = good_sale()
    sale["payments"][0]["extra"] = [value]
    if problem is None:
        assert validate_sale(sale) is sale
    else:
        assert problems(sale) == {"sale.payments[0].extra[0]": problem}


@pytest.mark.parametrize(
    "sale_id",
    [
        "{1b4e28ba-2fa1-11d2-883f-0016d3cca427}",
        "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "1b4e28ba2fa111d2883f0016d3cca427",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca42",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427 ",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca42g",
        "sale-number-one-of-today-at-the-till",  # 36 characters, no UUID
    ],
)
def test_only_the_canonical_uuid_spelling_is_an_id(sale_id: str) -> None:
    assert "sale.id" in problems(good_sale(id=sale_id))


def test_uppercase_uuid_is_an_id() -> None:
    validate_sale(good_sale(id="1B4E28BA-2FA1-11D2-883F-0016D3CCA427"))


def test_a_uuid7_is_an_id_and_ids_made_later_sort_after() -> None:
    """README "Choose time-ordered ids": what it advises is accepted, and sorts by time."""
    earlier = uuid7()
    time.sleep(0.002)
    later = uuid7()
    for sale_id in (earlier, later):
        assert uuid.UUID(sale_id).version == 7
        validate_sale(good_sale(id=sale_id))
    assert earlier < later


@pytest.mark.parametrize(
    ("qty", "kind"),
    [
        (True, "a boolean"),
        (None, "null"),
        (1.5, "1.5"),
        (12345678901234.5, "a number of many digits"),
        ("x" * 41, "a long string"),
        ("1,5", '"1,5"'),
        ("fourteen chars", '"fourteen chars"'),  # 13 characters or more, but few digits
        ("1234567890123", "a string of many digits"),
        ([1], "an array"),
        ({"n": 1}, "an object"),
    ],
)
def test_a_wrong_value_is_named_by_its_kind_and_never_echoes_many_digits(
    qty: Any, kind: str
) -> None:
    sale = good_sale()
    sale["lines"][0]["qty"] = qty
    assert problems(sale)["sale.lines[0].qty"] == (
        f'must be an integer count or a decimal string such as "0.350", got {kind}'
    )


def problem_list(sale: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        validate_sale(sale)
    return [(p.path, p.problem) for p in info.value.problems]


def test_at_most_50_problems_are_reported() -> None:
    sale = good_sale()
    sale["lines"] = [{"sku": "", "qty": 1, "amount": 1}] * 60
    assert len(problem_list(sale)) == 50


def test_money_beyond_2_53_names_its_bound() -> None:
    bound = "must be within ±9007199254740991 minor units, got "
    assert problem_list(good_sale(total=2**60))[0] == ("sale.total", bound + str(2**60))
    sale = good_sale()
    sale["lines"][0]["amount"] = -(2**53)
    assert problem_list(sale)[0] == ("sale.lines[0].amount", bound + str(-(2**53)))
    sale["lines"][0]["amount"] = 200
    sale["meta"]["limit"] = {"amount": 2**53 - 1, "tax": -(2**53 - 1)}  # the bounds: fine
    validate_sale(sale)


@pytest.mark.parametrize(
    ("key", "value", "path"),
    [
        ("note", PAN, "sale.meta.note"),  # a string child: scanned once
        ("pan", PAN, "sale.payments[0].pan"),  # a card secret: its value is not scanned again
        ("masked_pan", PAN, "sale.payments[0].masked_pan"),
    ],
)
def test_each_problem_is_reported_once(key: str, value: Any, path: str) -> None:
    sale = good_sale()
    (sale["meta"] if key == "note" else sale["payments"][0])[key] = value
    assert [p for p, _ in problem_list(sale)] == [path]


def test_card_data_in_an_array_is_reported_once() -> None:
    sale = good_sale()
    sale["meta"]["notes"] = ["ok", f"card {PAN}"]
    assert [p for p, _ in problem_list(sale)] == ["sale.meta.notes[1]"]


def test_a_key_holding_card_data_is_reported_without_descending_into_its_value() -> None:
    sale = good_sale()
    sale["meta"]["refs"] = {PAN: PAN}  # the path would carry the key
    assert_refused_unechoed(sale, "sale.meta.refs", PAN)
    assert len(problem_list(sale)) == 1


def test_a_missing_or_wrong_list_is_one_problem() -> None:
    sale = good_sale()
    del sale["payments"]
    assert problem_list(sale) == [("sale.payments", "is required")]
    assert problem_list(good_sale(lines="xy")) == [("sale.lines", 'must be an array, got "xy"')]


def test_a_13_digit_number_just_past_10_to_the_12_is_scanned_in_payments() -> None:
    sale = good_sale()
    sale["payments"][0]["terminal_ref"] = 1000000000009  # Luhn-valid, 13 digits
    assert_refused_unechoed(sale, "sale.payments[0].terminal_ref", "1000000000009")
    sale["payments"][0]["terminal_ref"] = 999999999999  # 12 digits: never card data
    validate_sale(sale)


def test_what_uuid_accepts_in_36_characters_is_an_id() -> None:
    """Hyphens elsewhere: uuid.UUID reads it, and it has the canonical length."""
    validate_sale(good_sale(id="1b4e28ba2fa1-11d2-883f-0016d3cca4-27"))
