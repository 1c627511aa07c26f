"""GS1 element strings: the Application Identifier table and the parser that checks against it.

`parse_gs1` splits a GS-separated or "(01)...(10)..." string into {AI: value} and checks each
value (length, character set, check digit, date); a string that does not parse raises
`GS1Error` saying where and why. Kept apart from the scanner codec: it is a data standard of
its own, with a long table, and knows nothing of symbologies or bytes on a wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edged.devices.scanner.gtin import gtin_check_digit
from edged.errors import EdgedError

GS = "\x1d"  # group separator: ends a variable-length GS1 element (FNC1 in the symbol)


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
