"""The ISO 4217 currency codes a sale may carry, and what the other active codes are.

Source: ISO 4217 "List one: currency, fund and precious metal codes", as published by the
maintenance agency (SIX Group) on 2025-05-12 (`<ISO_4217 Pblshd="2025-05-12">`). Update
this list from the next publication; the codes below are every active alphabetic code.

A sale is in money someone pays with: CURRENCIES are the legal tenders (including the real
X-currencies XAF, XCD, XCG, XOF and XPF). The other active codes are refused with what they
are: funds (units of account such as CLF or USN), precious metals, bond market units, other
units of account (XDR, XSU, XUA, XAD), the testing code XTS and XXX ("no currency").
"""

from __future__ import annotations

from collections.abc import Mapping


def _codes(text: str) -> list[str]:
    return text.split()


CURRENCIES = frozenset(
    _codes(
        """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
    """
    )
)

NOT_FOR_SALES: Mapping[str, str] = {
    **dict.fromkeys(
        _codes("BOV CHE CHW CLF COU MXV USN UYI UYW"), "a fund code (a unit of account)"
    ),
    **dict.fromkeys(_codes("XAG XAU XPD XPT"), "a precious metal"),
    **dict.fromkeys(_codes("XBA XBB XBC XBD"), "a bond market unit"),
    **dict.fromkeys(_codes("XAD XDR XSU XUA"), "a unit of account, not a currency"),
    "XTS": "the code reserved for testing",
    "XXX": 'the code for "no currency"',
}


def currency_problem(value: object) -> str | None:
    """Why `value` is no currency a sale can be in, said for the UI's developer; None if it is."""
    if not isinstance(value, str):
        got = (
            "null"
            if value is None
            else "a boolean"
            if isinstance(value, bool)
            else "a number"
            if isinstance(value, int | float)
            else "an array"
            if isinstance(value, list)
            else "an object"
        )
        return f"must be an ISO 4217 currency code of three capitals such as EUR, got {got}"
    if value in CURRENCIES:
        return None
    shown = f'"{value}"' if len(value) <= 8 else "a longer string"
    if len(value) != 3 or not value.isascii() or not value.isalpha() or not value.isupper():
        return f"must be an ISO 4217 currency code of three capitals such as EUR, got {shown}"
    what = NOT_FOR_SALES.get(value)
    if what is not None:
        return (
            f"{shown} is {what} in ISO 4217, not a currency a customer pays in; "
            "use the code of the currency of the sale, such as EUR"
        )
    return (
        f"{shown} is not an active ISO 4217 currency code; use the code of the currency of "
        "the sale, such as EUR, USD or GBP (a withdrawn code such as DEM is no longer valid)"
    )
