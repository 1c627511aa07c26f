"""The bundle's allow-list: every config key is shown or hidden on purpose, secrets hidden."""

from __future__ import annotations

import typing

import msgspec

from edged.config import CollectorConfig, Config
from edged.ctl import redact

HIDDEN_ON_PURPOSE = {"devices.payment.password", "uplink.username"}


def keys(kind: type, prefix: str = "") -> set[str]:
    """Every dotted key of a config struct, sections included by their fields."""
    found = set()
    for field in msgspec.structs.fields(kind):
        if field.name == "source" or f"{prefix}{field.name}" in redact.SHOWN_TABLES:
            continue
        inner = [
            a
            for a in (field.type, *typing.get_args(field.type))
            if isinstance(a, type) and issubclass(a, msgspec.Struct)
        ]
        name = f"{prefix}{field.name}"
        found |= keys(inner[0], f"{name}.") if inner else {name}
    return found


def test_every_config_key_is_shown_or_hidden_on_purpose() -> None:
    """A new key shows "(hidden)" in bundles until it is added to SHOWN; this test makes the
    choice explicit, so a secret is never shown by accident."""
    every = keys(Config) | keys(CollectorConfig)
    assert every - redact.SHOWN == HIDDEN_ON_PURPOSE
    assert every >= redact.SHOWN  # no stale names


def test_unknown_and_secret_values_are_hidden() -> None:
    raw = {
        "terminal": {"store_id": "S1", "pin": "1234"},
        "uplink": {"host": "b", "username": "s1-t1", "password": "x"},
        "devices": {"payment": {"password": "314159", "driver": "zvt"}},
        "operations": {"loyalty": "online"},
    }
    assert redact.config(raw) == {
        "terminal": {"store_id": "S1", "pin": "(hidden)"},
        "uplink": {"host": "b", "username": "(hidden)", "password": "(hidden)"},
        "devices": {"payment": {"password": "(hidden)", "driver": "zvt"}},
        "operations": {"loyalty": "online"},
    }


def test_log_lines_lose_sale_ids_and_long_digit_runs() -> None:
    line = (
        '{"event": "sale_committed", "sale_id": "till-sale-7", "seq": 3, "n": "4111111111111111"}'
    )
    shown = redact.log_line(line)
    assert "till-sale-7" not in shown
    assert '"seq": 3' in shown
    assert "################" in shown
    assert redact.log_line("plain 0c1a8a2e-5d7e-4f5b-9d43-0b8f1e2f3a4b") == "plain (uuid)"
