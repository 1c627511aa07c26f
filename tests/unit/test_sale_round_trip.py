"""A sale read back with sale.get and committed again unchanged is the same sale.

Numbers travel: the UI's JSON -> msgspec -> RFC 8785 canonical text in the journal -> msgspec
-> the sale.get answer -> the UI -> sale.commit again. A double such as 1e20 is written
100000000000000000000 by RFC 8785 and comes back as an integer past 2^53, which the validator
once refused: a sale it had committed could not be committed again as a duplicate.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edged.errors import ValidationError
from edged.journal import Journal
from edged.sale import validate_sale

floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e20, -1e20, 2.0**53, 2.0**60, 1e21, 1e300, -1.5e-7, 5e-324, 1.7976931348623157e308, -0.0]
)
leaves = floats | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=5) | st.booleans()
meta = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=5,
)


def sale_with(meta: dict[str, Any], weight: float) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": 100,
        "lines": [{"sku": "A", "qty": 1, "amount": 100, "weight_kg": weight}],
        "payments": [{"method": "cash", "amount": 100}],
        "meta": meta,
    }


def through_the_api(value: Any) -> Any:
    """What the UI sends back after reading an answer (both ends speak msgspec JSON)."""
    return msgspec.json.decode(msgspec.json.encode(value))


async def commit_read_commit(sales: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = await Journal.open(Path(tmp) / "j.db", store_id="S1", terminal_id="T1")
        try:
            firsts = await asyncio.gather(*(journal.commit(sale) for sale in sales))
            for sale, first in zip(sales, firsts, strict=True):
                found = await journal.get(sale["id"])
                assert found is not None
                # as TerminalServices.get_sale answers it, then as the UI sends it again
                read_back = through_the_api(msgspec.json.decode(found[0].sale_json))
                validate_sale(read_back)
                again = await journal.commit(through_the_api(read_back))
                assert again.duplicate, (sale, read_back)
                assert (again.seq, again.hash) == (first.seq, first.hash)
        finally:
            await journal.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(meta, floats), min_size=1, max_size=4))
def test_every_valid_sale_round_trips_as_a_duplicate(
    drawn: list[tuple[dict[str, Any], float]],
) -> None:
    sales = [sale_with(m, w) for m, w in drawn]
    for sale in sales:
        try:
            validate_sale(through_the_api(sale))
        except ValidationError:
            assume(False)  # e.g. a whole double that reads as a card number: refused both times
    asyncio.run(commit_read_commit([through_the_api(sale) for sale in sales]))


def test_a_large_float_in_meta_round_trips() -> None:
    sale = through_the_api(sale_with({"big": 1e20, "huge": 2.0**60, "tiny": -1.5e-7}, 1e16))
    asyncio.run(commit_read_commit([sale]))
