"""ISO 4217 currency numbers, as ZVT carries them, for the currencies the driver knows.

Configuration names a currency by its letters and the wire carries its number; the driver
checks the configured one at start-up, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping

CURRENCIES: Mapping[str, int] = {
    "EUR": 978,
    "CHF": 756,
    "GBP": 826,
    "USD": 840,
    "DKK": 208,
    "SEK": 752,
    "NOK": 578,
    "ISK": 352,
    "PLN": 985,
    "CZK": 203,
    "HUF": 348,
    "RON": 946,
    "BGN": 975,
    "TRY": 949,
    "JPY": 392,
    "CAD": 124,
    "AUD": 36,
}
_CURRENCY_CODES = {number: code for code, number in CURRENCIES.items()}


def currency_number(code: str) -> int:
    """ISO 4217 numeric code for a currency the driver knows; ValueError names the known ones."""
    try:
        return CURRENCIES[code]
    except KeyError:
        known = ", ".join(sorted(CURRENCIES))
        raise ValueError(f"currency {code!r} is not known to the ZVT driver ({known})") from None


def currency_code(number: int) -> str | None:
    return _CURRENCY_CODES.get(number)
