"""GTIN arithmetic (EAN, UPC, ITF-14, GS1 keys): the mod-10 check digit, UPC-E expansion.

Kept apart because both the symbology checks in `codec` and the GS1 "csum" linter in `gs1`
use it, and it is pure digit arithmetic with no notion of a scan.
"""

from __future__ import annotations


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of `body` (digits): weights 3,1,3... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def upce_to_upca(upce: str) -> str:
    """Expand an 8-digit UPC-E (number system, 6 digits, check) to its 12-digit UPC-A."""
    ns, d, check = upce[0], upce[1:7], upce[7]
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    return ns + body + check
