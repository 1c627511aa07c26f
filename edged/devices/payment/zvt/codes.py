"""What the PT's numeric codes mean, for people: result codes, intermediate statuses and
terminal statuses (meanings from the spec as published by ecrterm and Portalum.Zvt).

Kept apart from the wire format: these are texts for cashiers and logs, not bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

INTERMEDIATE_STATUS: Mapping[int, str] = {
    0x00: "waiting for the amount to be confirmed",
    0x01: "enter PIN",
    0x02: "enter PIN",
    0x03: "not accepted",
    0x04: "waiting for the host",
    0x05: "sending an automatic reversal",
    0x06: "sending post-bookings",
    0x07: "card not admitted",
    0x08: "card unknown",
    0x09: "card expired",
    0x0A: "insert card",
    0x0B: "remove card",
    0x0C: "card not readable",
    0x0D: "processing error",
    0x0E: "please wait",
    0x0F: "the terminal is starting an automatic end of day",
    0x10: "invalid card",
    0x11: "showing the balance",
    0x12: "system malfunction",
    0x13: "payment not possible",
    0x14: "credit not sufficient",
    0x15: "incorrect PIN",
    0x16: "limit not sufficient",
    0x17: "please wait",
    0x18: "PIN try limit exceeded",
    0x19: "card data incorrect",
    0x1A: "service mode",
    0x1B: "approved, please fill up",
    0x1C: "approved, please take the goods",
    0x1D: "declined",
    0x26: "waiting for the mobile number",
    0x27: "waiting for the mobile number to be repeated",
    0xC7: "waiting for the mileage",
    0xC8: "waiting for the cashier",
    0xC9: "the terminal is running an automatic diagnosis",
    0xCA: "the terminal is running an automatic initialisation",
    0xCB: "merchant journal full",
    0xCC: "debit advice not possible, PIN required",
    0xD2: "dialling up",
    0xD3: "dial-up connection made",
    0xE0: "waiting for the application to be chosen",
    0xE1: "waiting for the language to be chosen",
    0xF1: "offline",
    0xF2: "online",
    0xF3: "offline transaction",
}

RESULT_CODES: Mapping[int, str] = {
    0x00: "no error",
    0x64: "card not readable",
    0x65: "card data not present (no track data and no chip)",
    0x66: "processing error (or a card reader problem)",
    0x67: "function not permitted for girocard and Maestro cards",
    0x68: "function not permitted for credit and fuel cards",
    0x6A: "turnover file full",
    0x6B: "function deactivated (the terminal is not registered)",
    0x6C: "aborted at the terminal or timed out",
    0x6E: "card on the blocked list",
    0x6F: "wrong currency",
    0x71: "credit not sufficient (chip card)",
    0x72: "chip error",
    0x73: "card data incorrect",
    0x74: "DUKPT engine exhausted",
    0x75: "text not authentic",
    0x76: "PAN not on the white list",
    0x77: "end of day not possible",
    0x78: "card expired",
    0x79: "card not yet valid",
    0x7A: "card unknown",
    0x7D: "communication error (the communication module does not answer)",
    0x7E: "fallback to magnetic stripe not possible",
    0x83: "function not possible",
    0x85: "key missing",
    0x89: "PIN pad defective",
    0x9A: "ZVT protocol error",
    0x9B: "dial-up or communication fault",
    0x9C: "please wait",
    0xA0: "receiver not ready",
    0xA1: "the remote station does not answer",
    0xA3: "no connection",
    0xA4: "Geldkarte submission not possible",
    0xA5: "function not allowed by PCI-DSS/P2PE rules",
    0xB1: "memory full",
    0xB2: "merchant journal full",
    0xB4: "already reversed",
    0xB5: "reversal not possible",
    0xB7: "pre-authorisation incorrect (amount too high) or amount wrong",
    0xB8: "pre-authorisation error",
    0xBF: "supply voltage too low",
    0xC0: "card locking mechanism defective",
    0xC1: "merchant card locked",
    0xC2: "diagnosis required",
    0xC3: "maximum amount exceeded",
    0xC4: "card profile invalid; new card profiles must be loaded",
    0xC5: "payment method not supported",
    0xC6: "currency not applicable",
    0xC8: "amount too small",
    0xC9: "maximum transaction amount too small",
    0xCB: "function only allowed in euro",
    0xCC: "printer not ready",
    0xD2: "function not permitted for service cards",
    0xDC: "card inserted",
    0xDD: "error while ejecting the card",
    0xDE: "error while inserting the card",
    0xE0: "remote maintenance active",
    0xE2: "card reader does not answer or is defective",
    0xE3: "shutter closed",
    0xE4: "terminal activation required",
    0xE7: "goods group not found",
    0xE8: "no goods group table loaded",
    0xE9: "restriction code not permitted",
    0xEA: "card code not permitted",
    0xEB: "function not executable (PIN algorithm unknown)",
    0xEC: "PIN processing not possible",
    0xED: "PIN pad defective",
    0xF0: "open end-of-day batch present",
    0xF1: "girocard/Maestro offline error",
    0xF5: "OPT error",
    0xF6: "OPT data not available (OPT personalisation required)",
    0xFA: "error transmitting offline transactions",
    0xFB: "turnover data set defective",
    0xFC: "necessary device missing or defective",
    0xFD: "baud rate not supported",
    0xFE: "register unknown",
    0xFF: "system error",
}

TERMINAL_STATUS: Mapping[int, str] = {
    0x00: "ready",
    0x51: "initialisation required",
    0x62: "date or time incorrect",
    0x9C: "please wait (for example a software update is running)",
    0xB1: "memory full",
    0xB2: "merchant journal full",
    0xBF: "supply voltage too low",
    0xC0: "card locking mechanism defective",
    0xC1: "merchant card locked",
    0xC2: "diagnosis required",
    0xC4: "card profile invalid; new card profiles must be loaded",
    0xCC: "printer not ready",
    0xDC: "card inserted",
    0xDF: "out of order",
    0xE0: "remote maintenance active",
    0xE1: "card not completely removed",
    0xE2: "card reader does not answer or is defective",
    0xE3: "shutter closed",
    0xF6: "OPT data not available (OPT personalisation required)",
}

ABORTED_BY_USER = 0x6C  # "abort via time-out or abort key"
REMOVE_CARD = 0x40  # intermediate codes 0x41-0x67 are 0x01-0x27 plus "remove card"


def intermediate_text(code: int) -> str:
    """What a 04 FF status means, for the cashier."""
    if code in INTERMEDIATE_STATUS:
        return INTERMEDIATE_STATUS[code]
    base = INTERMEDIATE_STATUS.get(code - REMOVE_CARD) if 0x41 <= code <= 0x67 else None
    if base is not None:
        return base if base == "remove card" else f"{base}, remove card"
    return f"terminal status 0x{code:02X}"


def result_text(code: int) -> str:
    """What a result code (BMP 27, 06 1E, 84 xx) means, for a person."""
    if code in RESULT_CODES:
        return RESULT_CODES[code]
    if 0x01 <= code <= 0x63:
        return f"declined by the card issuer's host (host code 0x{code:02X})"
    return f"result code 0x{code:02X}"


def terminal_status_text(code: int) -> str:
    return TERMINAL_STATUS.get(code, f"terminal status 0x{code:02X}")
