"""JSON-RPC 2.0 as specified, over the real Unix socket: the specification's own examples
(section 7) as a table, then batches, ids, repeated keys, currencies and lone surrogates.

The spec's example methods are mapped onto edged's, keeping each example's shape: `subtract`
and `sum` (positional or named params, a result) become `sale.get` of a committed sale,
`get_data` becomes `status`, the notifications `update`, `notify_hello` and `notify_sum`
become `sync.now` calls without id, and `foobar` / `foo.get` stay methods that do not exist.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edged.api import ApiServer, codes
from edged.api.jsonrpc import MAX_BATCH
from edged.journal import Journal
from tests.integration.test_api_server import RECV_TIMEOUT_S, Client, DictServices, make_sale

SALE = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"  # committed before each example runs

Answer = tuple[Any, int | None]  # (id, error code or None for a result)

# name, the line sent (SALE is replaced), the answer: None, one Answer, or a list (a batch)
SPEC_EXAMPLES: list[tuple[str, str, Answer | list[Answer] | None]] = [
    (
        "rpc call with positional parameters",
        '{"jsonrpc": "2.0", "method": "sale.get", "params": ["SALE"], "id": 1}',
        (1, None),
    ),
    (
        "rpc call with named parameters",
        '{"jsonrpc": "2.0", "method": "sale.get", "params": {"id": "SALE"}, "id": 3}',
        (3, None),
    ),
    ("a notification", '{"jsonrpc": "2.0", "method": "sync.now", "params": []}', None),
    ("a notification of no method", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "rpc call of non-existent method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        ("1", codes.METHOD_NOT_FOUND),
    ),
    (
        "rpc call with invalid JSON",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        (None, codes.PARSE_ERROR),
    ),
    (
        "rpc call with invalid Request object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        (None, codes.INVALID_REQUEST),
    ),
    (
        "rpc call Batch, invalid JSON",
        '[ {"jsonrpc": "2.0", "method": "sale.get", "params": ["SALE"], "id": "1"},'
        ' {"jsonrpc": "2.0", "method" ]',
        (None, codes.PARSE_ERROR),
    ),
    ("rpc call with an empty Array", "[]", (None, codes.INVALID_REQUEST)),
    ("rpc call with an invalid Batch (but not empty)", "[1]", [(None, codes.INVALID_REQUEST)]),
    ("rpc call with invalid Batch", "[1,2,3]", [(None, codes.INVALID_REQUEST)] * 3),
    (
        "rpc call Batch",
        '[{"jsonrpc": "2.0", "method": "sale.get", "params": ["SALE"], "id": "1"},'
        ' {"jsonrpc": "2.0", "method": "sync.now", "params": []},'
        ' {"jsonrpc": "2.0", "method": "sale.get", "params": {"id": "SALE"}, "id": "2"},'
        ' {"foo": "boo"},'
        ' {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        ' {"jsonrpc": "2.0", "method": "status", "id": "9"}]',
        [
            ("1", None),
            ("2", None),
            (None, codes.INVALID_REQUEST),
            ("5", codes.METHOD_NOT_FOUND),
            ("9", None),
        ],
    ),
    (
        "rpc call Batch (all notifications)",
        '[{"jsonrpc": "2.0", "method": "sync.now", "params": []},'
        ' {"jsonrpc": "2.0", "method": "sync.now"}]',
        None,
    ),
]


@pytest.fixture
def services() -> DictServices:
    return DictServices()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "edged.sock"


@pytest.fixture
async def client(sock_path: Path, services: DictServices) -> AsyncIterator[Client]:
    async with ApiServer(sock_path, services):
        c = await Client.connect(sock_path)
        yield c
        c.close()


def answer_of(response: dict[str, Any]) -> Answer:
    assert response["jsonrpc"] == "2.0"
    assert ("result" in response) != ("error" in response), response
    return response["id"], response["error"]["code"] if "error" in response else None


def key(answer: Answer) -> str:
    return json.dumps(answer)


async def recv_line(c: Client) -> Any:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        line = await c.reader.readline()
    assert line.endswith(b"\n"), f"connection closed, got {line!r}"
    return json.loads(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [pytest.param(line, expected, id=name) for name, line, expected in SPEC_EXAMPLES],
)
async def test_the_specifications_examples(
    client: Client, line: str, expected: Answer | list[Answer] | None
) -> None:
    sale = {**make_sale(), "id": SALE}
    assert "result" in await client.call("sale.commit", {"sale": sale})
    await client.send(line.replace("SALE", SALE).encode() + b"\n")
    await client.send(b'{"jsonrpc":"2.0","id":"after","method":"status"}\n')
    lines = [await recv_line(client)]
    if expected is None:  # nothing came back: the one answer is the one to "after"
        await client.send(b'{"jsonrpc":"2.0","id":"last","method":"status"}\n')
        assert answer_of(lines[0]) == ("after", None)
        assert answer_of(await recv_line(client)) == ("last", None)
        return
    lines.append(await recv_line(client))  # answers come in any order: match them by id
    after = {"jsonrpc": "2.0", "id": "after"}
    (got,) = [
        line for line in lines if not (isinstance(line, dict) and after.items() <= line.items())
    ]
    if isinstance(expected, list):
        assert isinstance(got, list), got
        assert sorted(map(key, map(answer_of, got))) == sorted(map(key, expected))
    else:
        assert isinstance(got, dict), got
        assert answer_of(got) == expected


async def test_a_batch_answer_carries_each_result(client: Client) -> None:
    sale = make_sale()
    calls = [
        {"jsonrpc": "2.0", "id": "c", "method": "sale.commit", "params": {"sale": sale}},
        {"jsonrpc": "2.0", "id": "s", "method": "status"},
    ]
    await client.send(json.dumps(calls).encode() + b"\n")
    got = {r["id"]: r for r in await recv_line(client)}
    assert got["c"]["result"]["seq"] == 1
    assert got["s"]["result"]["journal"]["last_seq"] == 1


async def test_a_batch_over_the_limit_is_one_error_and_runs_nothing(
    client: Client, services: DictServices
) -> None:
    call = {"jsonrpc": "2.0", "method": "sync.now"}
    await client.send(json.dumps([call] * (MAX_BATCH + 1)).encode() + b"\n")
    got = await recv_line(client)
    assert answer_of(got) == (None, codes.INVALID_REQUEST)
    assert f"at most {MAX_BATCH} in one batch" in got["error"]["message"]
    await client.send(json.dumps([call] * MAX_BATCH + [{**call, "id": 1}]).encode() + b"\n")
    assert "at most" in (await recv_line(client))["error"]["message"]
    assert services.sync_calls == 0
    await client.send(json.dumps([call] * MAX_BATCH).encode() + b"\n")
    assert answer_of(await client.call("status")) == (1, None)
    assert services.sync_calls == MAX_BATCH


@pytest.mark.parametrize(
    "raw",
    ["0", "-0", "-7", "1.0", "-2.5e-3", "1E+2", "123456789012345678901234567890", '"a"', "null"],
)
async def test_ids_come_back_as_they_were_sent(client: Client, raw: str) -> None:
    await client.send(b'{"jsonrpc":"2.0","id":' + raw.encode() + b',"method":"status"}\n')
    await client.send(b'[{"jsonrpc":"2.0","id":' + raw.encode() + b',"method":"nope"}]\n')
    async with asyncio.timeout(RECV_TIMEOUT_S):
        single = await client.reader.readline()
        batch = await client.reader.readline()
    assert single.startswith(b'{"jsonrpc":"2.0","id":' + raw.encode() + b',"result":')
    assert batch.startswith(b'[{"jsonrpc":"2.0","id":' + raw.encode() + b',"error":')


@pytest.mark.parametrize("raw", ["{}", "[]", "true", '{"a":1}'])
async def test_ids_of_other_types_are_invalid_requests_with_a_null_id(
    client: Client, raw: str
) -> None:
    await client.send(b'{"jsonrpc":"2.0","id":' + raw.encode() + b',"method":"status"}\n')
    got = await recv_line(client)
    assert answer_of(got) == (None, codes.INVALID_REQUEST)
    assert '"id" must be a string, a number or null' in got["error"]["message"]


async def test_repeated_keys_are_refused_with_their_path(client: Client) -> None:
    sale = json.dumps(make_sale())
    in_meta = sale[:-1] + ', "meta": {"till": 1, "till": 2}}'
    await client.send(
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":{"sale":'
        + in_meta.encode()
        + b"}}\n"
    )
    got = await recv_line(client)
    assert answer_of(got) == (1, codes.INVALID_PARAMS)
    assert got["error"]["data"]["errors"] == [
        {
            "path": "sale.meta",
            "problem": "key 'till' appears more than once in this object; a key may appear "
            "only once (I-JSON, RFC 7493): remove the repeated one",
        }
    ]
    await client.send(b'{"jsonrpc":"2.0","id":2,"method":"status","method":"sync.now"}\n')
    got = await recv_line(client)
    assert answer_of(got) == (2, codes.INVALID_REQUEST)
    assert "key 'method' appears more than once in the request object" in got["error"]["message"]
    # a notification with a repeated key in params is not run and not answered
    await client.send(b'{"jsonrpc":"2.0","method":"sync.now","params":{"a":1,"a":1}}\n')
    assert answer_of(await client.call("status")) == (1, None)


async def test_a_lone_surrogate_is_named_by_path_and_position(client: Client) -> None:
    sale = json.dumps({**make_sale(), "meta": {"note": "ok"}}).replace('"ok"', '"ok\\ud800"')
    await client.send(
        b'{"jsonrpc":"2.0","id":1,"method":"sale.commit","params":{"sale":'
        + sale.encode()
        + b"}}\n"
    )
    got = await recv_line(client)
    assert answer_of(got) == (None, codes.PARSE_ERROR)
    assert got["error"]["message"].startswith(
        "parse error: params.sale.meta.note: the string holds a lone UTF-16 surrogate \\ud800 "
        "at position 2 (0-based, in UTF-16 units as JavaScript counts)"
    )


async def test_a_currency_that_is_no_currency_names_the_path(client: Client) -> None:
    got = await client.call("sale.commit", {"sale": {**make_sale(), "currency": "XAU"}})
    assert got["error"]["code"] == codes.INVALID_PARAMS
    (problem,) = got["error"]["data"]["errors"]
    assert problem["path"] == "sale.currency"
    assert problem["problem"].startswith('"XAU" is a precious metal in ISO 4217')
    got = await client.call("payment.start", {"id": "p-1", "amount": 100, "currency": "DEM"})
    assert got["error"]["code"] == codes.INVALID_PARAMS
    (problem,) = got["error"]["data"]["errors"]
    assert problem["path"] == "currency"
    assert problem["problem"].startswith('"DEM" is not an active ISO 4217 currency code')


# --- a batch of commits against the real journal -------------------------------------------


class JournalServices(DictServices):
    """The dict services with commits going to a real journal."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    async def commit_sale(self, sale: Any) -> dict[str, Any]:
        result = await self.journal.commit(sale)
        return {"seq": result.seq, "hash": result.hash, "duplicate": result.duplicate}


@pytest.fixture
async def journal() -> AsyncIterator[Journal]:
    with tempfile.TemporaryDirectory() as tmp:
        j = await Journal.open(Path(tmp) / "j.db", store_id="S1", terminal_id="T1")
        yield j
        await j.close()


async def test_commits_in_a_batch_are_each_their_own_commit(
    journal: Journal, sock_path: Path
) -> None:
    sales = [make_sale(total=100 + i) for i in range(20)]
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "sale.commit", "params": {"sale": sale}}
        for i, sale in enumerate([*sales, sales[0]])  # the first one twice
    ]
    async with ApiServer(sock_path, JournalServices(journal)):
        c = await Client.connect(sock_path)
        await c.send(json.dumps(calls).encode() + b"\n")
        got = {r["id"]: r["result"] for r in await recv_line(c)}
        c.close()
    assert sorted(got) == list(range(21))
    seqs = sorted(got[i]["seq"] for i in range(20))
    assert seqs == list(range(1, 21))
    assert {got[0]["duplicate"], got[20]["duplicate"]} == {False, True}
    assert got[0]["seq"] == got[20]["seq"]
    assert journal.stats().sale_transactions < 20  # they shared group commits
    for i, sale in enumerate(sales):
        found = await journal.get(sale["id"])
        assert found is not None
        assert found[0].seq == got[i]["seq"]
