"""Card data detection and log redaction (DESIGN invariant 6): both sides of the line.

Every published test PAN is found wherever it hides; GTINs and GS1 element strings, one in
ten of which happen to pass Luhn, are never taken for card data.
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edged.carddata import find_card_data, find_card_number, luhn_ok, redact

HEX_LETTERS = set("abcdefABCDEF")

# Test PANs the schemes and acquirers publish (Stripe, Adyen, Cybersource, Braintree, ...).
PANS_15_TO_19 = [
    "4242424242424242", "4111111111111111", "4000056655665556", "4012888888881881",
    "4917610000000000", "4000002500001001", "4444333322221111", "4035501000000008",
    "4000000000000002", "4917610000000000003",  # Visa (19 digits last)
    "5555555555554444", "2223003122003222", "5200828282828210", "5105105105105100",
    "5431111111111111", "2222400070000005", "5454545454545454", "5500000000000004",
    "378282246310005", "371449635398431", "378734493671000", "340000000000009",  # Amex
    "6011111111111117", "6011000990139424", "6011981111111113", "6011601160116611",  # Discover
    "3566002020360505", "3530111333300000", "3566111111111113",  # JCB
    "3056930009020004",  # Diners, 16 digits
    "6200000000000005", "6212345678901232", "6205500000000000004",  # UnionPay
    "6759649826438453", "6799990100000000019", "6304000000000000", "5019717010103742",
    "6331101999990016", "6703444444444449", "6062826786276634",  # Maestro and friends
]  # fmt: skip
PANS_13_14 = ["4222222222222", "36227206271667", "30569309025904", "38520000023237"]


def grouped(pan: str, sep: str) -> str:
    """The PAN as printed on the card: Amex 4-6-5, the rest 4-4-4-4(-3)."""
    if len(pan) == 15:
        return sep.join((pan[:4], pan[4:10], pan[10:]))
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def hidings(pan: str) -> list[str]:
    """Every shape of `pan` outside payments that must be refused."""
    return [
        pan,
        grouped(pan, " "),
        grouped(pan, "-"),
        f"card {pan} approved",
        f"ref:{grouped(pan, ' ')}/x",
        f"%B{pan}^DOE/JOHN^2512101000000000000?",
        f";{pan}=25121010000000000?",
        f"{pan}=2512101000",
        f"{pan}D25121010000000000F",
        "57 13 " + " ".join(f"{pan}D2512101000000F"[i : i + 2] for i in range(0, 26, 2)),
    ]


def test_published_test_pans_are_luhn_valid() -> None:
    assert all(luhn_ok(pan) for pan in PANS_15_TO_19 + PANS_13_14)


@pytest.mark.parametrize("pan", PANS_15_TO_19)
def test_a_pan_is_found_in_every_shape(pan: str) -> None:
    for text in hidings(pan):
        assert find_card_data(text) is not None, text
        assert find_card_data(text, strict=True) is not None, text
    assert find_card_number(int(pan)) == "a full card number"
    if int(pan) < 2**53:
        assert find_card_number(float(pan)) == "a full card number"


@pytest.mark.parametrize("pan", PANS_13_14)
def test_13_and_14_digits_count_only_in_payments_unless_in_track_shapes(pan: str) -> None:
    assert find_card_data(pan) is None  # cannot be told from a GTIN-13/14
    assert find_card_number(int(pan)) is None
    assert find_card_data(f"card {pan} ok", strict=True) == "a full card number"
    assert find_card_number(int(pan), strict=True) == "a full card number"
    assert find_card_data(f"%B{pan}^DOE/JOHN^2512101?") == "magnetic stripe track 1 data"
    assert find_card_data(f";{pan}=2512101?") == "magnetic stripe track 2 data"
    assert find_card_data(f"{pan}=2512101") == "magnetic stripe track 2 data"
    assert find_card_data(f"57{len(pan) // 2 + 4:02X}{pan}D2512101F") is not None


def test_the_kind_of_card_data_is_named() -> None:
    pan = "4111111111111111"
    assert find_card_data(f"%B{pan}^DOE/JOHN^2512?") == "magnetic stripe track 1 data"
    assert find_card_data(f";{pan}=2512?") == "magnetic stripe track 2 data"
    assert find_card_data(f"{pan}D2512101") == "EMV tag 57 (track 2 equivalent) data"
    # the example from a real tag 57 dump, hex bytes with spaces
    assert find_card_data("57 13 40 23 60 09 00 12 50 08 d1 80 52 21 00 00 00 00 00 00 0f") == (
        "EMV tag 57 (track 2 equivalent) data"
    )


@pytest.mark.parametrize(
    "text",
    [
        "S042-T03-000123",  # receipt number
        "+49 151 2345 6789",
        "0049-151-23456789",
        "(01)04012345123456(17)250101(10)ABC123",
        "ORD-2026-12-07-000000123456",
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "4111111111111112",  # Luhn fails
        "1111111111111117",  # Luhn-valid, no scheme starts with 1
        "41111111111111111111",  # 20 digits: no card
        "9f2c1e0d41111111a1111111d2512a0b5713",  # a hash
        "4001092815905",  # GTIN-13, Luhn-valid
        "40010928159050",  # GTIN-14 shape
        "2512-1010-0000",
        "x^2 for order 1234567890123",  # a caret, no track 1
        "total=350 order 1234567890123",  # an equals sign, no track 2
        "Dept 7 order 1234567890123",  # a D, no tag 57
    ],
)
def test_retail_data_is_not_card_data(text: str) -> None:
    assert find_card_data(text) is None


def gs1_check(body: str) -> str:
    """The GS1 mod-10 check digit (weights 3, 1 from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


def gtins(rng: random.Random, length: int, count: int) -> list[str]:
    bodies = (f"{rng.randrange(10 ** (length - 1)):0{length - 1}d}" for _ in range(count))
    return [body + gs1_check(body) for body in bodies]


@pytest.mark.parametrize("length", [8, 12, 13, 14])
def test_many_gtins_are_never_card_data(length: int) -> None:
    codes = gtins(random.Random(length), length, 20_000)
    luhn_valid = [code for code in codes if luhn_ok(code)]
    assert len(luhn_valid) > 1_000  # the dangerous ones are among them
    for code in codes:
        assert find_card_data(code) is None, code
        assert find_card_number(int(code)) is None, code
        assert find_card_data(f"item {code} x2") is None, code


gtin14 = st.text("0123456789", min_size=13, max_size=13).map(lambda b: b + gs1_check(b))
# AIs printed on retail trade items, with values as scanners deliver them
FIXED_AIS = {"01": gtin14, "02": gtin14, "11": st.text("0123456789", min_size=6, max_size=6)}
FIXED_AIS |= {"15": FIXED_AIS["11"], "17": FIXED_AIS["11"], "3103": FIXED_AIS["11"]}
VARIABLE_AIS = {
    "10": st.text("0123456789ABCDEFGHJK", min_size=1, max_size=20),
    "21": st.text("0123456789ABCDEF", min_size=1, max_size=20),
    "30": st.text("0123456789", min_size=1, max_size=8),
    "37": st.text("0123456789", min_size=1, max_size=8),
    "3922": st.text("0123456789", min_size=1, max_size=8),  # a price, in cents
}


@st.composite
def gs1_strings(draw: st.DrawFn) -> str:
    """A GS1 element string: bracketed, or raw with FNC1 (GS) after variable-length fields."""
    first = draw(st.sampled_from(["01", "02"]))
    pairs = [(first, draw(gtin14))]
    for ai in draw(st.lists(st.sampled_from(sorted(FIXED_AIS | VARIABLE_AIS)), max_size=4)):
        pairs.append((ai, draw((FIXED_AIS | VARIABLE_AIS)[ai])))
    if draw(st.booleans()):
        return "".join(f"({ai}){value}" for ai, value in pairs)
    raw = ""
    for ai, value in pairs:
        raw += ai + value + ("\x1d" if ai in VARIABLE_AIS else "")
    return draw(st.sampled_from(["", "]C1", "]d2", "]e0"])) + raw.rstrip("\x1d")


@settings(max_examples=2_000, deadline=None)
@given(gs1_strings())
def test_gs1_element_strings_are_not_card_data(text: str) -> None:
    assert find_card_data(text) is None


def test_a_gs1_lot_or_serial_that_reads_as_a_pan_is_kept_but_not_alone_or_in_payments() -> None:
    """Hypothesis found it: a 16-digit lot number that is Luhn-valid with a Visa prefix (one
    such lot in a hundred). Led by the GTIN it belongs to, it is a scan; alone, it is a PAN."""
    lot = "(10)4910700000000014"
    assert find_card_data("(01)09506000134352" + lot + "(17)261231") is None
    assert find_card_data("(00)106141411234567897(21)4111111111111111") is None
    assert find_card_data(lot) == "a full card number"
    assert find_card_data("(01)0950600013435" + lot) == "a full card number"  # 13 digits: no GTIN
    assert find_card_data("(01)09506000134352" + lot + " 4111111111111111") is not None
    assert find_card_data("(01)09506000134352" + lot, strict=True) == "a full card number"


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(PANS_15_TO_19), st.text(max_size=20), st.text(max_size=20))
def test_a_pan_between_any_text_is_found(pan: str, before: str, after: str) -> None:
    """Any text around it, as long as no digit touches the PAN (which would make it longer) and
    it is not the middle of a hexadecimal token (a hash or hex id, see the next test)."""
    before = before.rstrip("0123456789")
    after = after.lstrip("0123456789")
    assume(not (before[-1:] in HEX_LETTERS and after[:1] in HEX_LETTERS))
    assert find_card_data(before + pan + after) is not None


@pytest.mark.parametrize("pan", PANS_15_TO_19 + PANS_13_14)
def test_redact_masks_every_pan_shape(pan: str) -> None:
    for text in [pan, grouped(pan, " "), grouped(pan, "-"), f"m.{pan}.x", f"%B{pan}^A^2512"]:
        out = redact(text)
        assert pan not in out.replace(" ", "").replace("-", "")
        assert not any(ch.isdigit() for ch in out.split("^")[0]), out


def test_redact_keeps_short_numbers() -> None:
    assert redact("sale.lines[12].qty 42 port 1883") == "sale.lines[12].qty 42 port 1883"
    assert redact("id 123456789012") == "id ############"


def test_a_whole_double_is_read_as_the_journal_writes_it() -> None:
    # Its exact value 38453172259135104 is no card number, but RFC 8785 writes it
    # 38453172259135100 (a Luhn-valid Diners-prefixed 17 digits), which sale.get returns.
    assert int(3.84531722591351e16) == 38453172259135104
    assert find_card_number(3.84531722591351e16) == "a full card number"


def test_uuids_and_hex_ids_are_never_card_numbers() -> None:
    # Every sale carries a UUID; about one random UUID in a million has digit groups that
    # read as a grouped, Luhn-valid PAN with a scheme's prefix. None may ever be refused.
    grouped = "abcd4111-1111-1111-1111-abcdefabcdef"
    assert find_card_data(grouped) is None
    assert find_card_data("order deadbeef4111111111111111cafe") is None  # a hex order id
    rnd = random.Random(11)
    ids = (str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(50_000))
    assert [u for u in ids if find_card_data(u)] == []


@pytest.mark.parametrize(
    "text", ["ORD4111111111111111", "Visa4111111111111111", "x4111111111111111y"]
)
def test_a_pan_glued_to_other_letters_is_still_found(text: str) -> None:
    assert find_card_data(text) == "a full card number"


def luhn_number(prefix: str, length: int) -> str:
    """`prefix` padded with zeros to `length` digits, the last one making it Luhn-valid."""
    body = prefix + "0" * (length - len(prefix) - 1)
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# Each scheme's IIN range and PAN lengths at their edges: just inside is a card number, just
# outside (a prefix or length no scheme issues) is not. Discover and UnionPay lie within
# Maestro's 56-69.
SCHEME_EDGES = [
    # (prefix, length, a PAN?)
    ("4", 16, True), ("4", 19, True), ("4", 17, False), ("4", 15, False),
    ("51", 16, True), ("55", 16, True), ("51", 17, False), ("51", 15, False), ("51", 19, False),
    ("55", 19, False),
    ("2221", 16, True), ("2720", 16, True), ("2220", 16, False), ("2721", 16, False),
    ("34", 15, True), ("37", 15, True), ("35", 15, False), ("34", 16, False),
    ("37", 16, False), ("33", 15, False),
    ("3528", 16, True), ("3589", 19, True), ("3527", 16, False), ("3590", 16, False),
    ("300", 16, True), ("305", 19, True), ("306", 16, False), ("36", 16, True),
    ("38", 17, True), ("39", 16, True), ("40", 17, False),
    ("50", 16, True), ("56", 16, True), ("69", 19, True), ("70", 16, False),
    ("2200", 16, True), ("2204", 19, True), ("2205", 16, False),
]  # fmt: skip


@pytest.mark.parametrize(("prefix", "length", "pan"), SCHEME_EDGES)
def test_scheme_prefixes_and_lengths_at_their_edges(prefix: str, length: int, pan: bool) -> None:
    number = luhn_number(prefix, length)
    assert (find_card_data(number) is not None) == pan, number
    assert (find_card_data(f"{number}=2512") is not None) == pan, number  # track 2, no sentinel


@pytest.mark.parametrize(
    ("prefix", "length", "pan"),
    [
        ("36", 14, True),
        ("50", 12, True),
        ("4", 13, True),
        ("51", 14, False),
        ("4", 12, False),
        ("4", 14, False),
    ],
)
def test_short_pans_count_in_track_data_by_their_scheme(
    prefix: str, length: int, pan: bool
) -> None:
    """Track data is card data by shape: 12 to 14 digits there are a PAN if a scheme says so."""
    number = luhn_number(prefix, length)
    assert (find_card_data(f"{number}=2512101") is not None) == pan, number
    assert find_card_data(number) is None  # bare, 12-14 digits are left alone (GTINs)


def test_diners_14_digits_printed_4_6_4_count_only_in_payments() -> None:
    for printed in ("3622 720627 1667", "3622-720627-1667", "ref 3056 930902 5904 ok"):
        assert find_card_data(printed, strict=True) == "a full card number", printed
        assert find_card_data(printed) is None, printed
    assert find_card_data("3622 720627 1668", strict=True) is None  # not Luhn-valid


def test_track_1_counts_with_its_sentinel_whatever_the_digits_without_it_only_a_pan() -> None:
    assert find_card_data("%B1234567890123^DOE/JOHN^2512") == "magnetic stripe track 1 data"
    assert find_card_data("B4111111111111111^DOE/JOHN^2512") == "magnetic stripe track 1 data"
    assert find_card_data("B1234567890123^DOE/JOHN^2512") is None


def test_only_the_printed_card_layouts_are_joined() -> None:
    """Groups are joined only as 4-4-4-4(-1..3) and Amex 4-6-5 (4-6-4 in payments)."""
    pan16, pan17, pan19 = luhn_number("4", 16), luhn_number("67", 17), luhn_number("4", 19)
    assert find_card_data(f"{pan16[:8]} {pan16[8:]}") is None  # 8-8: two order numbers
    amex_and_more = f"{pan17[:4]} {pan17[4:10]} {pan17[10:15]} {pan17[15:]}"  # 4-6-5-2
    assert not luhn_ok(pan17[:15])
    assert find_card_data(amex_and_more) is None
    assert not luhn_ok(pan19[:16])
    visa19 = " ".join([pan19[0:4], pan19[4:8], pan19[8:12], pan19[12:16], pan19[16:]])
    assert find_card_data(visa19) == "a full card number"  # 4-4-4-4-3
    assert find_card_data(f"{visa19} 12") == "a full card number"  # and a group after it
    assert find_card_data(f"{visa19[:-2]} {visa19[-2:]}") is None  # 4-4-4-4-1-2


def test_inside_payments_luhn_valid_runs_of_13_to_19_digits_count() -> None:
    for length, counts in ((12, False), (13, True), (19, True), (20, False)):
        number = luhn_number("1", length)  # no scheme starts with 1
        assert (find_card_data(f"ref {number}", strict=True) is not None) == counts, number
        assert (find_card_number(int(number), strict=True) is not None) == counts, number
        assert find_card_data(f"ref {number}") is None
