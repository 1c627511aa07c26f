"""Sans-IO scanner codec: turn one code into a `Scan`, naming the symbology and validating it.

Pure code over bytes and text, as in h11: `decode_frame`/`decode_text` turn one code (a frame
from `framing.ScanFramer`, or a keyboard-wedge line) into a `Scan`: AIM symbology identifier,
EAN/UPC check digit, GS1 element string (parsed by `gs1`). The drivers own the I/O. Bytes that
are not a code raise `ProtocolError` naming the device, the stream offset and the byte; a code
that is readable but wrong (bad check digit, malformed GS1) is still a `Scan`, with `valid`
False and a `problem` for a person: the UI decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged.devices.scanner.framing import byte_error
from edged.devices.scanner.gs1 import GS1Error, parse_gs1
from edged.devices.scanner.gtin import gtin_check_digit, upce_to_upca
from edged.devices.state import ProtocolError

# Control characters a barcode may really carry: GS1 separators and ISO/IEC 15434 envelopes.
ALLOWED_CONTROLS = frozenset("\x04\x1c\x1d\x1e")


@dataclass(frozen=True, slots=True)
class Scan:
    """One decoded code. `valid` is False when a check digit or GS1 string is wrong."""

    code: str  # the data, without the AIM identifier; GS1 separators kept as "\x1d"
    symbology: str  # a name from SYMBOLOGIES, "unknown" when nothing says
    aim: str | None  # the AIM identifier the scanner sent ("]E0"), if any
    gs1: Mapping[str, str] | None  # {AI: value} for GS1 symbologies that parse
    valid: bool
    problem: str | None  # why it is not valid, for a person

    def to_event(self, device: str) -> dict[str, Any]:
        """The `scanner.scan` event data."""
        return {
            "code": self.code,
            "symbology": self.symbology,
            "aim": self.aim,
            "gs1": dict(self.gs1) if self.gs1 is not None else None,
            "valid": self.valid,
            "problem": self.problem,
            "device": device,
        }


def decode_frame(data: bytes, *, device: str = "scanner", offset: int = 0) -> Scan:
    """Decode one frame's bytes (UTF-8); ProtocolError if they are not a code at all."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise byte_error(
            device,
            offset + exc.start,
            data[exc.start],
            "not UTF-8; the code is dropped (check the scanner's character set or baud rate)",
        ) from None
    return decode_text(text, device=device, offset=offset)


def decode_text(text: str, *, device: str = "scanner", offset: int = 0) -> Scan:
    """Decode one code's text; ProtocolError if it is empty or holds stray control codes."""
    if not text:
        raise ProtocolError(f"{device}: offset {offset}: empty code (a prefix with no data)")
    for index, char in enumerate(text):
        if (char < " " or char == "\x7f") and char not in ALLOWED_CONTROLS:
            at = offset + len(text[:index].encode("utf-8"))
            raise byte_error(
                device,
                at,
                ord(char),
                "control character inside a code; the code is dropped (line noise, or a "
                "wrong baud rate or suffix setting)",
            )
    return decode_code(text)


def decode_code(text: str) -> Scan:
    """Name the symbology and validate the code; never raises."""
    aim, data = split_aim(text)
    if aim is None:
        return _inferred(data)
    char, modifier = aim[1], aim[2]
    if char == "E":
        return _ean_upc(data, aim, modifier)
    if (char, modifier) in _GS1_AIMS:
        return _gs1(data, aim, _GS1_AIMS[char, modifier])
    if char == "I" and len(data) == 14 and data.isascii() and data.isdigit() and modifier != "3":
        return _checked(data, aim, "itf-14", data)
    return Scan(data, _AIM_CODE_CHARS.get(char, "unknown"), aim, None, True, None)


def split_aim(text: str) -> tuple[str | None, str]:
    """(AIM identifier, data): an identifier is "]" + code letter + modifier character."""
    if (
        len(text) >= 3
        and text[0] == "]"
        and text[1].isascii()
        and text[1].isalpha()
        and text[2].isascii()
        and text[2].isalnum()
    ):
        return text[:3], text[3:]
    return None, text


# AIM (ISO/IEC 15424) code characters. The modifier refines a few of them, below.
_AIM_CODE_CHARS = {
    "A": "code-39",
    "B": "telepen",
    "C": "code-128",
    "E": "ean-upc",
    "F": "codabar",
    "G": "code-93",
    "H": "code-11",
    "I": "itf",
    "L": "pdf417",
    "M": "msi",
    "Q": "qr",
    "R": "standard-2of5",
    "S": "industrial-2of5",
    "U": "maxicode",
    "X": "unknown",  # "other": the scanner does not say which
    "d": "datamatrix",
    "e": "gs1-databar",
    "h": "han-xin",
    "z": "aztec",
}
# Identifiers whose data is a GS1 element string (FNC1 in the first position).
_GS1_AIMS = {
    ("C", "1"): "gs1-128",
    ("d", "2"): "gs1-datamatrix",
    ("d", "5"): "gs1-datamatrix",  # with ECI
    ("Q", "3"): "gs1-qr",
    ("Q", "4"): "gs1-qr",  # with ECI
    **{("e", m): "gs1-databar" for m in "0123"},
}
# The identifier a scanner sends for each name (used by the simulator and the tests).
AIM_IDS = {
    "ean-13": "]E0",
    "upc-a": "]E0",
    "upc-e": "]E0",
    "ean-8": "]E4",
    "gs1-128": "]C1",
    "gs1-databar": "]e0",
    "datamatrix": "]d1",
    "gs1-datamatrix": "]d2",
    "qr": "]Q1",
    "gs1-qr": "]Q3",
    "code-39": "]A0",
    "code-128": "]C0",
    "itf": "]I0",
    "itf-14": "]I1",
    "codabar": "]F0",
    "code-93": "]G0",
    "code-11": "]H0",
    "pdf417": "]L0",
    "msi": "]M0",
    "maxicode": "]U0",
    "aztec": "]z0",
    "unknown": "]X0",
}
SYMBOLOGIES = frozenset({*_AIM_CODE_CHARS.values(), *_GS1_AIMS.values(), *AIM_IDS, "ean-upc-addon"})


# --- EAN / UPC / GTIN ------------------------------------------------------------------------


def _check_problem(digits: str, name: str) -> str | None:
    """Why `digits` (check digit last) fail their check, or None."""
    expected = gtin_check_digit(digits[:-1])
    if int(digits[-1]) == expected:
        return None
    return f"{name} check digit is {digits[-1]}, expected {expected} (misread or mistyped code)"


def _checked(data: str, aim: str | None, name: str, digits: str) -> Scan:
    problem = _check_problem(digits, name)
    return Scan(data, name, aim, None, problem is None, problem)


_BY_LENGTH = {8: "ean-8", 12: "upc-a", 13: "ean-13", 14: "itf-14"}
# ]E3: EAN/UPC with a 2- or 5-digit add-on; the total length tells the main part's length.
_ADDON_MAIN = {10: 8, 13: 8, 14: 12, 15: 13, 17: 12, 18: 13}


def _inferred(data: str) -> Scan:
    """No AIM identifier: an all-digit code of 8, 12, 13 or 14 digits is taken as EAN/UPC/GTIN."""
    if data.isascii() and data.isdigit() and len(data) in _BY_LENGTH:
        return _checked(data, None, _BY_LENGTH[len(data)], data)
    return Scan(data, "unknown", None, None, True, None)


def _ean_upc(data: str, aim: str, modifier: str) -> Scan:
    if not (data.isascii() and data.isdigit()):
        return Scan(data, "ean-upc", aim, None, False, "EAN/UPC data must be digits only")
    n = len(data)
    if modifier in "12":
        return Scan(data, "ean-upc-addon", aim, None, True, None)
    if modifier == "4" and n == 8:
        return _checked(data, aim, "ean-8", data)
    if modifier == "3" and n in _ADDON_MAIN:
        main = data[: _ADDON_MAIN[n]]
        digits = upce_to_upca(main) if len(main) == 8 else main
        problem = _check_problem(digits, "EAN/UPC")
        return Scan(data, "ean-upc-addon", aim, None, problem is None, problem)
    if modifier == "0" and n in (8, 12, 13):
        if n == 8:
            if data[0] not in "01":
                return Scan(data, "upc-e", aim, None, False, "UPC-E must start with 0 or 1")
            return _checked(data, aim, "upc-e", upce_to_upca(data))
        return _checked(data, aim, "upc-a" if n == 12 else "ean-13", data)
    return Scan(data, "ean-upc", aim, None, False, f"{n} digits do not fit the identifier {aim}")


def _gs1(data: str, aim: str, name: str) -> Scan:
    try:
        elements = parse_gs1(data)
    except GS1Error as exc:
        return Scan(data, name, aim, None, False, str(exc))
    return Scan(data, name, aim, elements, True, None)
