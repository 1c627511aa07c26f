"""What a support bundle may show of the config and the log: an allow-list, never a deny-list.

A config key's value is shown only if its dotted name is in SHOWN; every other key (a secret
today, or a key added tomorrow that nobody has looked at yet) keeps its name and shows HIDDEN.
Log lines lose sale ids and every run of 12 or more digits (edged.carddata.redact).
"""

from __future__ import annotations

import json
import re
from typing import Any

from edged.carddata import redact

HIDDEN = "(hidden)"
_SERIAL = ("path", "baudrate", "bytesize", "parity", "stopbits")
_PRINTER = (
    *_SERIAL,
    *("driver", "connection", "host", "port", "usb_vendor_id", "usb_product_id", "profile"),
    *("columns", "codepage", "status", "poll_s", "confirm_timeout_s", "header", "footer"),
    *("code", "print_hash", "drawer_pin", "drawer_pulse_ms", "drawer_sensor", "render_dir"),
)
_SCANNER = (*_SERIAL, "driver", "prefix", "suffix", "layout", "grab", "double_read_s")
# devices.payment.password (the ZVT registration password) is not listed: hidden.
_PAYMENT = (*_SERIAL, "driver", "connection", "host", "port", "currency", "pos_number", "simulate")
# uplink.username is not listed: with the password file it is the till's broker login.
_UPLINK = (
    *("host", "port", "tls", "ca_file", "cert_file", "key_file", "password_file", "client_id"),
    *("keepalive_s", "topic_prefix", "window", "batch_max", "ack_timeout_s", "online_after_s"),
    *("reconnect_min_s", "reconnect_max_s", "require_signed_acks", "outbox_warn_after_s"),
    "outbox_alarm_after_s",
)
SHOWN = frozenset(
    [f"terminal.{k}" for k in ("store_id", "terminal_id", "receipt_format", "timezone")]
    + [f"journal.{k}" for k in ("path", "retain_days", "id_retain_days", "adopt")]
    + [f"api.{k}" for k in ("socket", "max_clients", "max_buffered_bytes")]
    + [f"uplink.{k}" for k in _UPLINK]
    + [f"devices.printer.{k}" for k in _PRINTER]
    + [f"devices.scanner.{k}" for k in _SCANNER]
    + [f"devices.payment.{k}" for k in _PAYMENT]
    + [f"refdata.{k}" for k in ("path", "keep", "chunk_wait_s")]
    + [f"collector.{k}" for k in ("db", "state_dir", "shared_group", "trust_on_first_use")]
)
SHOWN_TABLES = frozenset({"operations"})  # every key: operation kinds, values "online"/"any"
# Log fields that name a sale: a bundle carries no sale, not even its id.
SALE_FIELDS = frozenset({"sale_id", "id"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def config(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The parsed TOML `table` with every value not in SHOWN replaced by HIDDEN."""
    shown: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if name in SHOWN_TABLES:
                shown[key] = {k: v if isinstance(v, str) else HIDDEN for k, v in value.items()}
            else:
                shown[key] = config(value, f"{name}.")
        else:
            shown[key] = value if name in SHOWN else HIDDEN
    return shown


def log_line(line: str) -> str:
    """One log line fit for a bundle: sale ids and UUIDs dropped, long digit runs masked."""
    try:
        event: Any = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict):
        line = json.dumps(
            {k: "(omitted)" if k in SALE_FIELDS else v for k, v in event.items()},
            ensure_ascii=False,
        )
    return redact(_UUID.sub("(uuid)", line))
