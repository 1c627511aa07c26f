"""The `[operations]` policy: which operation kinds need the store link, and what is said."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import DEFAULT_OPERATIONS, load_config
from edged.errors import ConfigError, ValidationError
from edged.operations import NeedsStoreError, OperationPolicy, needs_store_message
from tests.support.sales import cash_sale

GOOD = '[terminal]\nstore_id = "s1"\nterminal_id = "t1"\n'


def load(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "edged.toml"
    path.write_text(GOOD + text)
    return load_config(path).operations


def test_config_merges_the_table_over_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == DEFAULT_OPERATIONS
    table = load(tmp_path, '[operations]\nloyalty = "any"\ncoupon_scan = "online"\n')
    assert table["loyalty"] == "any"  # this store's loyalty works without the store
    assert table["coupon_scan"] == "online"  # a kind the UI names
    assert table["gift_card"] == "online"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('loyalty = "sometimes"', "operations.loyalty", 'must be "online"'),
        ("loyalty = 3", "operations.loyalty", "got 3"),
        ('"gift card" = "online"', "operations.gift card", "an operation kind must be"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"[operations]\n{text}\n")
    assert f": {key}: " in str(err.value)
    assert problem in str(err.value)


def test_message_is_plain_words_for_the_cashier() -> None:
    assert needs_store_message(["loyalty"]) == (
        "Loyalty needs the store's server, which this till cannot reach right now; "
        "sell without it or try again when the link is back"
    )
    assert needs_store_message(["voucher", "gift_card", "return_with_receipt_lookup"]).startswith(
        "Voucher, gift card and return with receipt lookup need the store's server"
    )


def test_only_online_kinds_are_refused_and_only_while_not_online() -> None:
    policy = OperationPolicy({**DEFAULT_OPERATIONS, "coupon": "any"})
    kinds = ["coupon", "loyalty", "gift_card"]
    assert policy.refused(kinds, "online") == []
    for state in ("offline", "connecting", "disabled"):
        assert policy.refused(kinds, state) == ["loyalty", "gift_card"]
    assert policy.refused(["coupon"], "offline") == []


def test_sale_operations_are_checked_with_paths() -> None:
    policy = OperationPolicy(DEFAULT_OPERATIONS)
    assert policy.sale_kinds(cash_sale()) == []
    assert policy.sale_kinds({**cash_sale(), "operations": ["loyalty", "loyalty"]}) == ["loyalty"]
    with pytest.raises(ValidationError) as err:
        policy.sale_kinds({**cash_sale(), "operations": ["loyalty", "lotto", 7]})
    paths = [(p.path, p.problem) for p in err.value.problems]
    assert paths[0][0] == "sale.operations[1]"
    assert "unknown operation kind 'lotto'" in paths[0][1] and "gift_card" in paths[0][1]
    assert paths[1] == ("sale.operations[2]", "must be a string")
    with pytest.raises(ValidationError, match="must be an array"):
        policy.sale_kinds({**cash_sale(), "operations": "loyalty"})


async def test_admit_sale_refuses_lets_retries_through_and_reports_invalid_sales() -> None:
    policy = OperationPolicy(DEFAULT_OPERATIONS)
    sale = {**cash_sale(), "operations": ["voucher"]}

    async def never(_id: str) -> bool:
        return False

    async def known(_id: str) -> bool:
        return True

    await policy.admit_sale(sale, lambda: "online", never)
    with pytest.raises(NeedsStoreError) as err:
        await policy.admit_sale(sale, lambda: "offline", never)
    assert (err.value.kinds, err.value.link) == (["voucher"], "offline")
    await policy.admit_sale(
        sale, lambda: "offline", known
    )  # a retried commit gets its duplicate answer
    with pytest.raises(ValidationError):
        await policy.admit_sale({**sale, "total": 1.5}, lambda: "offline", never)
