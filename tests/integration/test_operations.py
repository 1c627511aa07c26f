"""Operations that need the store, against a real daemon and a real mosquitto killed and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.api.codes import INVALID_PARAMS, NEEDS_STORE, SALE_NOT_FOUND
from edged.client import ApiClient, ApiError
from tests.support.daemon import DaemonProcess, uplink_section
from tests.support.mosquitto import Mosquitto
from tests.support.sales import cash_sale

# Far longer than an answer "at once" may take: a refusal that waited for any of the link's
# timeouts (ack_timeout_s, keepalive) would miss it.
AT_ONCE_S = 5.0
LINK_TIMEOUTS_S = 30


@pytest.fixture
def daemon(tmp_path: Path, broker: Mosquitto) -> Iterator[DaemonProcess]:
    uplink = uplink_section(
        broker.port,
        online_after_s=0.3,
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
        ack_timeout_s=LINK_TIMEOUTS_S,
        keepalive_s=LINK_TIMEOUTS_S,
    )
    d = DaemonProcess(tmp_path / "till", uplink=uplink)
    d.config.write_text(d.config.read_text() + '[operations]\ncoupon = "any"\n')
    d.start()
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
async def client(daemon: DaemonProcess) -> AsyncIterator[ApiClient]:
    async with ApiClient(daemon.socket) as c:
        yield c


async def link_state(client: ApiClient) -> str:
    state: str = (await client.call("status"))["link"]["state"]
    return state


async def wait_link(client: ApiClient, online: bool) -> None:
    last = ""

    async def reached() -> bool:
        nonlocal last
        last = await link_state(client)
        return (last == "online") == online

    async with asyncio.timeout(20):
        while not await reached():
            await asyncio.sleep(0.05)


async def refused(client: ApiClient, method: str, params: dict[str, Any]) -> ApiError:
    async with asyncio.timeout(AT_ONCE_S):
        with pytest.raises(ApiError) as err:
            await client.call(method, params)
    return err.value


async def test_refused_at_once_while_the_broker_is_down_accepted_once_back(
    broker: Mosquitto, client: ApiClient
) -> None:
    await wait_link(client, online=True)
    assert await client.call("operation.check", {"kind": "loyalty"}) == {
        "kind": "loyalty",
        "needs_store": True,
        "link": "online",
    }
    online_sale = {**cash_sale(), "operations": ["loyalty"]}
    first = await client.call("sale.commit", {"sale": online_sale})

    broker.stop()
    await wait_link(client, online=False)
    err = await refused(client, "operation.check", {"kind": "gift_card"})
    assert err.code == NEEDS_STORE
    assert err.data == {"kinds": ["gift_card"], "link": "offline"}
    assert "Gift card needs the store's server, which this till cannot reach right now" in str(err)
    # The rest goes on: operations that need no store, and plain sales.
    coupon = await client.call("operation.check", {"kind": "coupon"})
    assert coupon == {"kind": "coupon", "needs_store": False, "link": "offline"}
    plain = await client.call("sale.commit", {"sale": cash_sale()})
    assert plain["duplicate"] is False

    refused_sale = {**cash_sale(), "operations": ["coupon", "voucher"]}
    err = await refused(client, "sale.commit", {"sale": refused_sale})
    assert err.code == NEEDS_STORE
    assert err.data == {"kinds": ["voucher"], "link": "offline"}
    err = await refused(client, "sale.get", {"id": refused_sale["id"]})
    assert err.code == SALE_NOT_FOUND  # nothing was journaled
    # A commit retried after the link went down gets its first answer, not a refusal.
    again = await client.call("sale.commit", {"sale": online_sale})
    assert (again["seq"], again["duplicate"]) == (first["seq"], True)
    err = await refused(client, "operation.check", {"kind": "lotto"})
    assert err.code == INVALID_PARAMS
    assert "unknown operation kind 'lotto'" in err.data["errors"][0]["problem"]

    broker.start()
    await wait_link(client, online=True)
    ok = await client.call("operation.check", {"kind": "gift_card"})
    assert ok["link"] == "online"
    committed = await client.call("sale.commit", {"sale": refused_sale})
    assert committed["seq"] == plain["seq"] + 1
    stored = await client.call("sale.get", {"id": refused_sale["id"]})
    assert stored["sale"]["operations"] == ["coupon", "voucher"]
