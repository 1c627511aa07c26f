"""Sans-IO scanner codec: frame a serial byte stream into codes, name the symbology, validate.

Pure code over bytes and text, as in h11: `ScanFramer` cuts a byte stream into frames at a
configurable prefix/suffix, `decode_frame`/`decode_text` turn one code into a `Scan` (AIM
symbology identifier, EAN/UPC check digit, GS1 element string), and `parse_gs1` splits GS1
element strings. The drivers own the I/O. Bytes that are not a code raise (or, from the
framer, yield) `ProtocolError` naming the device, the stream offset and the byte; a code that
is readable but wrong (bad check digit, malformed GS1) is still a `Scan`, with `valid` False and
a `problem` for a person: the UI decides what to do with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edged.devices.state import ProtocolError
from edged.errors import EdgedError

MAX_CODE_BYTES = 8192  # a full QR code carries < 3 KB and PDF417 < 2 KB: more is noise
GS = "\x1d"  # group separator: ends a variable-length GS1 element (FNC1 in the symbol)
LINE_ENDINGS = (b"\r", b"\n", b"\r\n")
# Control characters a barcode may really carry: GS1 separators and ISO/IEC 15434 envelopes.
ALLOWED_CONTROLS = frozenset("\x04\x1c\x1d\x1e")


# --- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One code's bytes as the scanner sent them, prefix and suffix removed."""

    data: bytes
    offset: int  # stream offset of data[0], counted from the first byte fed


class ScanFramer:
    """Cut a scanner's byte stream into frames: [junk] prefix code suffix, repeated.

    With a line-ending suffix (CR, LF or CRLF) any CR or LF ends a frame and empty lines are
    skipped, so a scanner set to CRLF also works with suffix CR (a common mismatch). Any other
    suffix must match exactly. Bytes before the prefix, and frames longer than `max_code`
    bytes, are reported as ProtocolError items in the output, in stream order, and the framer
    carries on with the next frame. It holds at most `max_code` + len(suffix) bytes between
    calls, and its output does not depend on how the stream is split into chunks.
    """

    def __init__(
        self,
        *,
        prefix: bytes = b"",
        suffix: bytes = b"\r",
        max_code: int = MAX_CODE_BYTES,
        device: str = "scanner",
    ) -> None:
        if not suffix:
            raise ValueError("a serial scanner needs a suffix (CR, CRLF, TAB ...) to end codes")
        if max_code < 1:
            raise ValueError(f"max_code must be >= 1, got {max_code}")
        self.prefix = prefix
        self.suffix = suffix
        self.max_code = max_code
        self.device = device
        self._lines = suffix in LINE_ENDINGS
        self._tail = 0 if self._lines else len(suffix) - 1  # bytes of a suffix split by a read
        self._buf = bytearray()
        self._start = 0  # stream offset of _buf[0]
        self._searched = 0  # _buf[:_searched] holds no terminator
        self._discarding = False  # inside an oversize frame, waiting for its end

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished frame held between calls."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        """Consume `data`; return the frames and errors it completes, in stream order."""
        out: list[Frame | ProtocolError] = []
        self._buf += data
        while (end := self._find_end()) is not None:
            stop, after = end
            if self._discarding:
                self._discarding = False
            elif stop > self.max_code:
                out.append(self._oversize())
            else:
                self._frame(bytes(self._buf[:stop]), out)
            del self._buf[:after]
            self._start += after
            self._searched = 0
        keep = self._tail if self._discarding else self.max_code + self._tail
        if len(self._buf) > keep:
            if not self._discarding:
                out.append(self._oversize())
                self._discarding = True
            drop = len(self._buf) - self._tail
            del self._buf[:drop]
            self._start += drop
            self._searched = 0
        return out

    def _find_end(self) -> tuple[int, int] | None:
        """(end of the frame's bytes, start of the next frame) of the first terminator."""
        if self._lines:
            match = _LINE_END.search(self._buf, self._searched)
            if match is None:
                self._searched = len(self._buf)
                return None
            return match.start(), match.start() + 1
        index = self._buf.find(self.suffix, self._searched)
        if index < 0:
            self._searched = max(0, len(self._buf) - self._tail)
            return None
        return index, index + len(self.suffix)

    def _frame(self, raw: bytes, out: list[Frame | ProtocolError]) -> None:
        if not raw:
            return  # an empty line, or the LF of a CRLF
        if not self.prefix:
            out.append(Frame(raw, self._start))
            return
        at = raw.find(self.prefix)
        if at != 0:
            junk = raw if at < 0 else raw[:at]
            out.append(
                _byte_error(
                    self.device,
                    self._start,
                    junk[0],
                    f"{len(junk)} byte(s) outside a code; expected the prefix {self.prefix!r} "
                    "first (check the scanner's prefix setting)",
                )
            )
        if at >= 0:
            out.append(Frame(raw[at + len(self.prefix) :], self._start + at + len(self.prefix)))

    def _oversize(self) -> ProtocolError:
        return ProtocolError(
            f"{self.device}: offset {self._start}: no suffix {self.suffix!r} within "
            f"{self.max_code} bytes; the frame is dropped (check the scanner's suffix setting)"
        )


_LINE_END = re.compile(rb"[\r\n]")


def _byte_error(device: str, offset: int, byte: int, problem: str) -> ProtocolError:
    """A ProtocolError in the project's shape: device, stream offset, byte, problem."""
    return ProtocolError(f"{device}: offset {offset}: byte 0x{byte:02x}: {problem}")


# --- one code --------------------------------------------------------------------------------


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
        raise _byte_error(
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
            raise _byte_error(
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


# --- GS1 element strings ---------------------------------------------------------------------


class GS1Error(EdgedError):
    """A GS1 element string does not parse; says where and why."""

    def __init__(self, offset: int, problem: str) -> None:
        self.offset = offset
        self.problem = problem
        super().__init__(f"GS1 offset {offset}: {problem}")


_CSETS = {
    "N": frozenset("0123456789"),
    "X": frozenset(  # GS1 AI encodable character set 82
        "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    ),
    "Y": frozenset("#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),  # set 39
    "Z": frozenset("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz="),  # 64
}
_CSET_NAMES = {"N": "digits", "X": "GS1 set 82", "Y": "GS1 set 39", "Z": "GS1 set 64"}


@dataclass(frozen=True, slots=True)
class _Part:
    """One component of an AI's data: character set, length range, optional, checks."""

    cset: str
    min: int
    max: int
    optional: bool
    checks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AISpec:
    """What an Application Identifier's data looks like."""

    ai: str
    title: str
    parts: tuple[_Part, ...]
    predefined: bool  # fixed length by the GS1 table: never followed by a separator

    @property
    def fixed_length(self) -> int | None:
        if all(p.min == p.max and not p.optional for p in self.parts):
            return sum(p.min for p in self.parts)
        return None

    def check(self, value: str, offset: int) -> None:
        """GS1Error unless `value` fits the spec; `offset` is where the value starts."""
        least = sum(p.min for p in self.parts if not p.optional)
        most = sum(p.max for p in self.parts)
        if not least <= len(value) <= most:
            wanted = f"exactly {most}" if least == most else f"{least} to {most}"
            raise GS1Error(
                offset, f"({self.ai}) {self.title}: {len(value)} characters, needs {wanted}"
            )
        pos = 0
        for i, part in enumerate(self.parts):
            if pos == len(value):  # only an optional last part can be missing
                break
            last = i == len(self.parts) - 1
            chunk = value[pos:] if last else value[pos : pos + part.max]
            if len(chunk) < part.min:
                raise GS1Error(
                    offset + pos,
                    f"({self.ai}) {self.title}: last part has {len(chunk)} characters, "
                    f"needs {part.min}",
                )
            allowed = _CSETS[part.cset]
            for j, char in enumerate(chunk):
                if char not in allowed:
                    raise GS1Error(
                        offset + pos + j,
                        f"({self.ai}) {self.title}: {char!r} is not allowed here "
                        f"({_CSET_NAMES[part.cset]} only)",
                    )
            for check in part.checks:
                problem = _LINTERS[check](chunk)
                if problem:
                    raise GS1Error(offset + pos, f"({self.ai}) {self.title}: {problem}")
            pos += len(chunk)


def _csum(digits: str) -> str | None:
    expected = gtin_check_digit(digits[:-1])
    return None if int(digits[-1]) == expected else f"check digit {digits[-1]}, expected {expected}"


_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date(yymmdd: str, day_zero: bool) -> str | None:
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    if not 1 <= mm <= 12:
        return f"month {mm:02d} in date {yymmdd} does not exist"
    days = 28 if mm == 2 and yy % 4 else _DAYS[mm - 1]  # GS1's century window: 4 | yy is leap
    if (dd == 0 and not day_zero) or dd > days:
        return f"day {dd:02d} in date {yymmdd} does not exist"
    return None


def _yymmdd(text: str) -> str | None:
    return _date(text, day_zero=False)


def _yymmd0(text: str) -> str | None:
    return _date(text, day_zero=True)  # day 00 means "the end of the month"


_LINTERS: dict[str, Callable[[str], str | None]] = {
    "csum": _csum,
    "yymmdd": _yymmdd,
    "yymmd0": _yymmd0,
}

# After the GS1 Barcode Syntax Dictionary (gs1/gs1-syntax-dictionary): AI or range, "*" for
# a predefined length, components (N digits, X set 82, Y set 39, Z set 64; "N..20" up to 20;
# "[...]" optional; linters after commas), title. Pairing rules (req=, ex=) are not checked.
_AI_TABLE = """
00 * N18,csum # SSCC
01 * N14,csum # GTIN
02 * N14,csum # CONTENT
03 * N14,csum # MTO GTIN
10 X..20 # BATCH/LOT
11 * N6,yymmd0 # PROD DATE
12 * N6,yymmd0 # DUE DATE
13 * N6,yymmd0 # PACK DATE
15 * N6,yymmd0 # BEST BEFORE
16 * N6,yymmd0 # SELL BY
17 * N6,yymmd0 # USE BY
20 * N2 # VARIANT
21 X..20 # SERIAL
22 X..20 # CPV
235 X..28 # TPX
240 X..30 # ADDITIONAL ID
241 X..30 # CUST. PART No.
242 N..6 # MTO VARIANT
243 X..20 # PCN
250 X..30 # SECONDARY SERIAL
251 X..30 # REF. TO SOURCE
253 N13,csum [X..17] # GDTI
254 X..20 # GLN EXTENSION COMPONENT
255 N13,csum [N..12] # GCN
30 N..8 # VAR. COUNT
3100-3105 * N6 # NET WEIGHT (kg)
3110-3115 * N6 # LENGTH (m)
3120-3125 * N6 # WIDTH (m)
3130-3135 * N6 # HEIGHT (m)
3140-3145 * N6 # AREA (m2)
3150-3155 * N6 # NET VOLUME (l)
3160-3165 * N6 # NET VOLUME (m3)
3200-3205 * N6 # NET WEIGHT (lb)
3210-3215 * N6 # LENGTH (in)
3220-3225 * N6 # LENGTH (ft)
3230-3235 * N6 # LENGTH (yd)
3240-3245 * N6 # WIDTH (in)
3250-3255 * N6 # WIDTH (ft)
3260-3265 * N6 # WIDTH (yd)
3270-3275 * N6 # HEIGHT (in)
3280-3285 * N6 # HEIGHT (ft)
3290-3295 * N6 # HEIGHT (yd)
3300-3305 * N6 # GROSS WEIGHT (kg)
3310-3315 * N6 # LENGTH (m), log
3320-3325 * N6 # WIDTH (m), log
3330-3335 * N6 # HEIGHT (m), log
3340-3345 * N6 # AREA (m2), log
3350-3355 * N6 # VOLUME (l), log
3360-3365 * N6 # VOLUME (m3), log
3370-3375 * N6 # KG PER m2
3400-3405 * N6 # GROSS WEIGHT (lb)
3410-3415 * N6 # LENGTH (in), log
3420-3425 * N6 # LENGTH (ft), log
3430-3435 * N6 # LENGTH (yd), log
3440-3445 * N6 # WIDTH (in), log
3450-3455 * N6 # WIDTH (ft), log
3460-3465 * N6 # WIDTH (yd), log
3470-3475 * N6 # HEIGHT (in), log
3480-3485 * N6 # HEIGHT (ft), log
3490-3495 * N6 # HEIGHT (yd), log
3500-3505 * N6 # AREA (in2)
3510-3515 * N6 # AREA (ft2)
3520-3525 * N6 # AREA (yd2)
3530-3535 * N6 # AREA (in2), log
3540-3545 * N6 # AREA (ft2), log
3550-3555 * N6 # AREA (yd2), log
3560-3565 * N6 # NET WEIGHT (t oz)
3570-3575 * N6 # NET VOLUME (oz)
3600-3605 * N6 # NET VOLUME (qt)
3610-3615 * N6 # NET VOLUME (gal.)
3620-3625 * N6 # VOLUME (qt), log
3630-3635 * N6 # VOLUME (gal.), log
3640-3645 * N6 # VOLUME (in3)
3650-3655 * N6 # VOLUME (ft3)
3660-3665 * N6 # VOLUME (yd3)
3670-3675 * N6 # VOLUME (in3), log
3680-3685 * N6 # VOLUME (ft3), log
3690-3695 * N6 # VOLUME (yd3), log
37 N..8 # COUNT
3900-3909 N..15 # AMOUNT
3910-3919 N3 N..15 # AMOUNT (ISO currency)
3920-3929 N..15 # PRICE
3930-3939 N3 N..15 # PRICE (ISO currency)
3940-3943 N4 # PRCNT OFF
3950-3955 N6 # PRICE/UoM
400 X..30 # ORDER NUMBER
401 X..30 # GINC
402 N17,csum # GSIN
403 X..30 # ROUTE
410 * N13,csum # SHIP TO LOC
411 * N13,csum # BILL TO
412 * N13,csum # PURCHASE FROM
413 * N13,csum # SHIP FOR LOC
414 * N13,csum # LOC No.
415 * N13,csum # PAY TO
416 * N13,csum # PROD/SERV LOC
417 * N13,csum # PARTY
420 X..20 # SHIP TO POST
421 N3 X..9 # SHIP TO POST (ISO country)
422 N3 # ORIGIN
423 N..15 # COUNTRY - INITIAL PROCESS
424 N3 # COUNTRY - PROCESS
425 N..15 # COUNTRY - DISASSEMBLY
426 N3 # COUNTRY - FULL PROCESS
427 X..3 # ORIGIN SUBDIVISION
7001 N13 # NSN
7002 X..30 # MEAT CUT
7003 N6,yymmdd N4 # EXPIRY TIME
7004 N..4 # ACTIVE POTENCY
7005 X..12 # CATCH AREA
7006 N6,yymmdd # FIRST FREEZE DATE
7007 N6,yymmdd [N6],yymmdd # HARVEST DATE
7008 X..3 # AQUATIC SPECIES
7009 X..10 # FISHING GEAR TYPE
7010 X..2 # PROD METHOD
7011 N6,yymmdd [N4] # TEST BY DATE
7020 X..20 # REFURB LOT
7021 X..20 # FUNC STAT
7022 X..20 # REV STAT
7023 X..30 # GIAI - ASSEMBLY
710 X..20 # NHRN PZN
711 X..20 # NHRN CIP
712 X..20 # NHRN CN
713 X..20 # NHRN DRN
714 X..20 # NHRN AIM
715 X..20 # NHRN NDC
7240 X..20 # PROTOCOL
8001 N14 # DIMENSIONS
8002 X..20 # CMT No.
8003 N14 [X..16] # GRAI
8004 X..30 # GIAI
8005 N6 # PRICE PER UNIT
8006 N14,csum N4 # ITIP
8007 X..34 # IBAN
8008 N8 [N..4] # PROD TIME
8009 X..50 # OPTSEN
8010 Y..30 # CPID
8011 N..12 # CPID SERIAL
8012 X..20 # VERSION
8013 X..25 # GMN
8017 N18,csum # GSRN - PROVIDER
8018 N18,csum # GSRN - RECIPIENT
8019 N..10 # SRIN
8020 X..25 # REF No.
8026 N14,csum N4 # ITIP CONTENT
8030 Z..90 # DIGSIG
8110 X..70 # COUPON
8111 N4 # POINTS
8112 X..70 # PAPERLESS COUPON
8200 X..70 # PRODUCT URL
90 X..30 # INTERNAL
91-99 X..90 # INTERNAL
"""

_PART = re.compile(r"^(\[)?([NXYZ])(\.\.)?(\d+)(\])?((?:,\w+)*)$")


def _parse_table(table: str) -> dict[str, AISpec]:
    specs: dict[str, AISpec] = {}
    for line in table.strip().splitlines():
        fields, _, title = line.partition("#")
        ais, *tokens = fields.split()
        predefined = bool(tokens) and tokens[0] == "*"
        parts: list[_Part] = []
        for token in tokens[1:] if predefined else tokens:
            match = _PART.match(token)
            if match is None:
                raise ValueError(f"bad AI table component {token!r} in {line!r}")
            opt, cset, dots, size, _, checks = match.groups()
            n = int(size)
            part = _Part(cset, 1 if dots else n, n, bool(opt), tuple(checks.split(","))[1:])
            if parts and (parts[-1].optional or parts[-1].min != parts[-1].max):
                raise ValueError(f"only the last component may vary or be optional: {line!r}")
            if not set(part.checks) <= _LINTERS.keys():
                raise ValueError(f"unknown linter in {line!r}")
            parts.append(part)
        first, _, last = ais.partition("-")
        for number in range(int(first), int(last or first) + 1):
            ai = str(number).zfill(len(first))
            specs[ai] = AISpec(ai, title.strip(), tuple(parts), predefined)
    return specs


AIS: Mapping[str, AISpec] = _parse_table(_AI_TABLE)


def _lookup_ai(data: str, offset: int) -> AISpec:
    """The AI that starts at `offset` (AIs are prefix-free: at most one matches)."""
    for size in (2, 3, 4):
        spec = AIS.get(data[offset : offset + size])
        if spec is not None:
            return spec
    head = data[offset : offset + 4]
    raise GS1Error(offset, f"unknown or unsupported Application Identifier at {head!r}")


def parse_gs1(data: str) -> dict[str, str]:
    """{AI: value} of a GS1 element string, GS-separated or in the "(01)...(10)..." form."""
    if data.startswith("("):
        return _parse_bracketed(data)
    elements: dict[str, str] = {}
    pos = 1 if data.startswith(GS) else 0  # some scanners send the leading FNC1 as GS
    if pos == len(data):
        raise GS1Error(pos, "no element string")
    while pos < len(data):
        spec = _lookup_ai(data, pos)
        start = pos + len(spec.ai)
        fixed = spec.fixed_length
        if fixed is not None:
            end = min(start + fixed, len(data))
            nxt = end + 1 if data[end : end + 1] == GS else end
        else:
            sep = data.find(GS, start)
            end = len(data) if sep < 0 else sep
            nxt = end + 1
        _add(elements, spec, data[start:end], start)
        pos = nxt
    return elements


_BRACKETED_AI = re.compile(r"\(([0-9]{2,4})\)")


def _parse_bracketed(data: str) -> dict[str, str]:
    """The human-readable form; a "(NN)" inside a value that names a known AI is ambiguous."""
    marks = [m for m in _BRACKETED_AI.finditer(data) if m.group(1) in AIS]
    if not marks or marks[0].start() != 0:
        raise GS1Error(0, f"expected a known AI in brackets, found {data[:6]!r}")
    elements: dict[str, str] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(data)
        _add(elements, AIS[mark.group(1)], data[mark.end() : end], mark.end())
    return elements


def _add(elements: dict[str, str], spec: AISpec, value: str, offset: int) -> None:
    spec.check(value, offset)
    if elements.setdefault(spec.ai, value) != value:
        raise GS1Error(offset, f"({spec.ai}) appears twice with different values")
