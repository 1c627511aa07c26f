"""Every error code the local API returns, in one place (the README copies this list).

- `-32700` PARSE_ERROR: the line is not UTF-8 JSON; the message names the byte offset (a
  lone surrogate: the JSON path and the position in the string). The connection stays usable.
- `-32600` INVALID_REQUEST: not a JSON-RPC 2.0 request object (wrong `jsonrpc`, an `id` that
  is no string, number or null, `method` not a string, `params` neither object nor array, an
  unknown member, a key repeated in the request object), `[]`, a batch over 100 requests.
  Also a line over the 1 MiB limit, after which the server closes the connection.
- `-32601` METHOD_NOT_FOUND: no such method; the message lists the methods that exist.
- `-32602` INVALID_PARAMS: wrong parameters, a key repeated inside `params`, or an invalid
  sale. `data.errors` is a list of
  `{path, problem}`, e.g. `{"path": "sale.lines[2].amount", "problem": "must be an
  integer number of minor units, got 1.5"}`. Fix the request; resending it unchanged fails.
- `-32603` INTERNAL_ERROR: a bug or unexpected failure in the daemon, logged with a
  traceback (`data.error` names the exception type). The outcome is unknown; retrying a
  `sale.commit` with the same sale id is always safe.
- `-32000` JOURNAL_ERROR: the journal could not be written or read; the message says what.
  For `sale.commit`: not committed, unless the message says the outcome is unknown. Retry
  with the same id (always safe); call a technician if it persists.
- `-32001` JOURNAL_FULL: the disk holding the journal is full. This request committed
  nothing and nothing committed before is lost. Call a technician to free space, then retry
  with the same id; no restart is needed.
- `-32002` SALE_CONFLICT: this sale id was already committed with other content
  (`data`: `{id, seq}`). Use a new id for a new sale.
- `-32003` SALE_NOT_FOUND: `sale.get` found no sale with this id (`data`: `{id}`).
- `-32004` SHUTTING_DOWN: the daemon is stopping and did not run the request. Retry once it
  is back (systemd restarts it); the sale id makes a retried commit safe.
- `-32005` OVERLOADED: the connection is refused and closed: too many clients are connected
  (`[api] max_clients`), or the unfinished lines of all clients together are over
  `[api] max_buffered_bytes` and this client holds more than its share. `data`:
  `{limit, value}`. Reconnect later; close connections the UI does not use.
- `-32010` DEVICE_NOT_CONFIGURED: the config has no such device (`data`: `{device}`);
  add `[devices.NAME]` or do not offer the function on this till.
- `-32011` DEVICE_NOT_READY: the device cannot do it now (`data`: `{device, state, detail}`,
  e.g. `{"device": "payment", "state": "absent", "detail": "/dev/edged/payment does not
  exist"}`). Show `detail` to the cashier; retry once the `device` event says `ready`.
- `-32012` PAYMENT_BUSY: another payment is in progress (`data`: `{id}`); one at a time.
- `-32013` PAYMENT_CONFLICT: this payment id was started with another amount or currency
  (`data`: `{id}`). Use a new id for a new payment.
- `-32014` PAYMENT_NOT_FOUND: no payment with this id (`data`: `{id}`).
- `-32015` NOT_SUPPORTED: the device's protocol cannot do this (e.g. a reversal over
  Telium Concert E+); the message says what to do instead.
- `-32020` NEEDS_STORE: an operation that needs the store (`[operations]` kind = "online":
  loyalty, vouchers, gift cards, returns with receipt lookup) while the store link is not
  `online` (`data`: `{kinds, link}`). Answered at once; the message is for the cashier.
  Sell without it or try again once the `link` event says `online`.
"""

from __future__ import annotations

# JSON-RPC 2.0 standard codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes, from -32000 down
JOURNAL_ERROR = -32000
JOURNAL_FULL = -32001
SALE_CONFLICT = -32002
SALE_NOT_FOUND = -32003
SHUTTING_DOWN = -32004
OVERLOADED = -32005
DEVICE_NOT_CONFIGURED = -32010
DEVICE_NOT_READY = -32011
PAYMENT_BUSY = -32012
PAYMENT_CONFLICT = -32013
PAYMENT_NOT_FOUND = -32014
NOT_SUPPORTED = -32015
NEEDS_STORE = -32020
