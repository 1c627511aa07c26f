"""KeyDecoder: key events of a keyboard-wedge scanner decode right on US and German layouts."""

from __future__ import annotations

import pytest
from evdev import ecodes as e
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.scanner import keymap
from edged.devices.scanner.codec import decode_text
from edged.devices.scanner.keymap import LAYOUTS, KeyDecoder
from edged.devices.state import ProtocolError

Events = list[tuple[int, int]]


def tap(code: int) -> Events:
    return [(code, 1), (code, 0)]


def with_mod(mod: int, *codes: int) -> Events:
    events = [(mod, 1)]
    for code in codes:
        events += tap(code)
    return [*events, (mod, 0)]


def decode(decoder: KeyDecoder, events: Events) -> list[str]:
    out = []
    for code, value in events:
        text = decoder.feed(code, value)
        if text is not None:
            out.append(text)
    return out


def typed(layout: str, text: str) -> Events:
    """Key events that type `text` on `layout`, computed from the layout's own tables."""
    table = LAYOUTS[layout]
    events: Events = []
    for char in text:
        if char in table.dead:
            mod, code = _where(table, char)
            events += (with_mod(mod, code) if mod else tap(code)) + tap(e.KEY_SPACE)
            continue
        mod, code = _where(table, char)
        events += with_mod(mod, code) if mod else tap(code)
    return events


def _where(table: keymap.Layout, char: str) -> tuple[int, int]:
    for level, mod in ((table.plain, 0), (table.shift, e.KEY_LEFTSHIFT)):
        for code, c in level.items():
            if c == char:
                return mod, code
    for code, c in table.altgr.items():
        if c == char:
            return e.KEY_RIGHTALT, code
    raise AssertionError(f"{char!r} cannot be typed on {table.name}")


def test_key_code_constants_match_linux_input_event_codes() -> None:
    assert keymap.KEY_TAB == e.KEY_TAB
    assert keymap.KEY_ENTER == e.KEY_ENTER
    assert keymap.KEY_KPENTER == e.KEY_KPENTER
    assert keymap.KEY_LEFTSHIFT == e.KEY_LEFTSHIFT
    assert keymap.KEY_RIGHTSHIFT == e.KEY_RIGHTSHIFT
    assert keymap.KEY_LEFTCTRL == e.KEY_LEFTCTRL
    assert keymap.KEY_RIGHTCTRL == e.KEY_RIGHTCTRL
    assert keymap.KEY_LEFTALT == e.KEY_LEFTALT
    assert keymap.KEY_RIGHTALT == e.KEY_RIGHTALT
    assert keymap.KEY_CAPSLOCK == e.KEY_CAPSLOCK
    assert keymap.KEY_SPACE == e.KEY_SPACE
    assert keymap.KEY_102ND == e.KEY_102ND
    assert keymap.KEY_KPDOT == e.KEY_KPDOT
    us, de = LAYOUTS["us"], LAYOUTS["de"]
    named = {
        e.KEY_Q: "q", e.KEY_P: "p", e.KEY_A: "a", e.KEY_L: "l", e.KEY_Z: "z", e.KEY_M: "m",
        e.KEY_1: "1", e.KEY_0: "0", e.KEY_MINUS: "-", e.KEY_EQUAL: "=", e.KEY_SLASH: "/",
        e.KEY_LEFTBRACE: "[", e.KEY_RIGHTBRACE: "]", e.KEY_SEMICOLON: ";", e.KEY_GRAVE: "`",
        e.KEY_APOSTROPHE: "'", e.KEY_BACKSLASH: "\\", e.KEY_COMMA: ",", e.KEY_DOT: ".",
        e.KEY_KP0: "0", e.KEY_KP5: "5", e.KEY_KP9: "9", e.KEY_KPMINUS: "-",
        e.KEY_KPPLUS: "+", e.KEY_KPASTERISK: "*", e.KEY_KPSLASH: "/",
    }  # fmt: skip
    plain = {code: us.char(code, shift=False, caps=False, altgr=False) for code in named}
    assert plain == named
    assert (de.plain[e.KEY_Y], de.plain[e.KEY_Z]) == ("z", "y")


def test_us_hello_world_with_shift() -> None:
    events = (
        with_mod(e.KEY_LEFTSHIFT, e.KEY_H)
        + tap(e.KEY_E) + tap(e.KEY_L) + tap(e.KEY_L) + tap(e.KEY_O)
        + tap(e.KEY_MINUS)
        + with_mod(e.KEY_RIGHTSHIFT, e.KEY_W)
        + tap(e.KEY_O) + tap(e.KEY_R) + tap(e.KEY_L) + tap(e.KEY_D)
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_MINUS)
        + tap(e.KEY_1) + tap(e.KEY_2) + tap(e.KEY_3)
        + tap(e.KEY_ENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("us"), events) == ["Hello-World_123"]


def test_german_hello_world_with_shift() -> None:
    events = (
        with_mod(e.KEY_LEFTSHIFT, e.KEY_H)
        + tap(e.KEY_E) + tap(e.KEY_L) + tap(e.KEY_L) + tap(e.KEY_O)
        + tap(e.KEY_SLASH)  # "-" sits where US has "/"
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_W)
        + tap(e.KEY_O) + tap(e.KEY_R) + tap(e.KEY_L) + tap(e.KEY_D)
        + with_mod(e.KEY_RIGHTSHIFT, e.KEY_SLASH)
        + tap(e.KEY_1) + tap(e.KEY_2) + tap(e.KEY_3)
        + tap(e.KEY_KPENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("de"), events) == ["Hello-World_123"]


def test_the_same_keys_mean_different_text_on_each_layout() -> None:
    events = tap(e.KEY_Y) + tap(e.KEY_Z) + tap(e.KEY_MINUS) + tap(e.KEY_ENTER)
    assert decode(KeyDecoder("us"), events) == ["yz-"]
    assert decode(KeyDecoder("de"), events) == ["zyß"]


def test_german_umlauts_sharp_s_and_altgr() -> None:
    events = (
        tap(e.KEY_LEFTBRACE) + tap(e.KEY_SEMICOLON) + tap(e.KEY_APOSTROPHE)
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_LEFTBRACE, e.KEY_SEMICOLON, e.KEY_APOSTROPHE)
        + tap(e.KEY_MINUS)
        + with_mod(e.KEY_RIGHTALT, e.KEY_Q, e.KEY_E, e.KEY_7, e.KEY_8, e.KEY_9, e.KEY_0)
        + with_mod(e.KEY_RIGHTALT, e.KEY_MINUS, e.KEY_102ND, e.KEY_RIGHTBRACE)
        + tap(e.KEY_BACKSLASH) + with_mod(e.KEY_LEFTSHIFT, e.KEY_2, e.KEY_3)
        + tap(e.KEY_ENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("de"), events) == ['üöäÜÖÄß@€{[]}\\|~#"§']


def test_german_dead_keys_followed_by_space_give_the_accent() -> None:
    events = (
        tap(e.KEY_GRAVE) + tap(e.KEY_SPACE)  # ^
        + tap(e.KEY_EQUAL) + tap(e.KEY_SPACE)  # acute accent
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_EQUAL) + tap(e.KEY_SPACE)  # `
        + tap(e.KEY_GRAVE) + tap(e.KEY_A)  # no composition: "^a"
        + tap(e.KEY_SPACE)
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_GRAVE)  # ° is not dead
        + tap(e.KEY_GRAVE)  # a dead key right before the terminator still counts
        + tap(e.KEY_ENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("de"), events) == ["^´`^a °^"]


def test_us_has_no_dead_keys_and_right_alt_is_plain_alt() -> None:
    events = tap(e.KEY_GRAVE) + with_mod(e.KEY_RIGHTALT, e.KEY_Q) + tap(e.KEY_ENTER)
    assert decode(KeyDecoder("us"), events) == ["`q"]


def test_repeat_events_are_ignored() -> None:
    events = [
        (e.KEY_LEFTSHIFT, 1),
        (e.KEY_LEFTSHIFT, 2),
        (e.KEY_A, 1),
        (e.KEY_A, 2),
        (e.KEY_A, 2),
        (e.KEY_A, 0),
        (e.KEY_LEFTSHIFT, 2),
        (e.KEY_LEFTSHIFT, 0),
        (e.KEY_B, 1),
        (e.KEY_B, 2),
        (e.KEY_B, 0),
        (e.KEY_ENTER, 1),
        (e.KEY_ENTER, 2),
        (e.KEY_ENTER, 0),
    ]
    assert decode(KeyDecoder("us"), events) == ["Ab"]


def test_shift_counts_only_while_held_and_either_shift_works() -> None:
    events = [
        (e.KEY_LEFTSHIFT, 1),
        (e.KEY_RIGHTSHIFT, 1),
        (e.KEY_LEFTSHIFT, 0),  # right shift still down
        *tap(e.KEY_X),
        (e.KEY_RIGHTSHIFT, 0),
        *tap(e.KEY_X),
        *tap(e.KEY_TAB),
    ]
    assert decode(KeyDecoder("us"), events) == ["Xx"]


def test_capslock_shifts_letters_only() -> None:
    events = (
        tap(e.KEY_CAPSLOCK) + tap(e.KEY_A) + tap(e.KEY_1)
        + with_mod(e.KEY_LEFTSHIFT, e.KEY_A) + tap(e.KEY_CAPSLOCK) + tap(e.KEY_A)
        + tap(e.KEY_ENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("us"), events) == ["A1aa"]
    umlaut = tap(e.KEY_CAPSLOCK) + tap(e.KEY_SEMICOLON) + tap(e.KEY_ENTER)
    assert decode(KeyDecoder("de"), umlaut) == ["Ö"]


def test_each_terminator_ends_a_code_and_empty_codes_are_skipped() -> None:
    events = (
        tap(e.KEY_1) + tap(e.KEY_ENTER) + tap(e.KEY_2) + tap(e.KEY_KPENTER)
        + tap(e.KEY_3) + tap(e.KEY_TAB) + tap(e.KEY_ENTER) + tap(e.KEY_ENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("us"), events) == ["1", "2", "3"]
    only_tab = KeyDecoder("us", terminators=frozenset({e.KEY_TAB}))
    assert decode(only_tab, tap(e.KEY_1) + tap(e.KEY_TAB)) == ["1"]
    with pytest.raises(ProtocolError, match="key code 28"):
        only_tab.feed(e.KEY_ENTER, 1)


def test_keypad_digits_and_decimal_separator_per_layout() -> None:
    events = (
        tap(e.KEY_KP1) + tap(e.KEY_KPDOT) + tap(e.KEY_KP5) + tap(e.KEY_KPPLUS)
        + tap(e.KEY_KPENTER)
    )  # fmt: skip
    assert decode(KeyDecoder("us"), events) == ["1.5+"]
    assert decode(KeyDecoder("de"), events) == ["1,5+"]


def test_ctrl_right_bracket_is_the_gs1_separator() -> None:
    events = (
        typed("us", "]d2011231231231233310A")
        + with_mod(e.KEY_LEFTCTRL, e.KEY_RIGHTBRACE)
        + typed("us", "99X") + tap(e.KEY_ENTER)
    )  # fmt: skip
    [code] = decode(KeyDecoder("us"), events)
    assert code == "]d20112312312312333" + "10A\x1d99X"
    assert decode_text(code).gs1 == {"01": "12312312312333", "10": "A", "99": "X"}
    de_events = [(e.KEY_LEFTCTRL, 1), *with_mod(e.KEY_RIGHTALT, e.KEY_9), (e.KEY_LEFTCTRL, 0)]
    de_events += tap(e.KEY_ENTER)
    assert decode(KeyDecoder("de"), de_events) == ["\x1d"]  # Ctrl+AltGr+9 = Ctrl+]


def test_alt_keypad_codes() -> None:
    def alt(*digits: int) -> Events:
        return with_mod(e.KEY_LEFTALT, *digits)

    events = (
        alt(e.KEY_KP0, e.KEY_KP2, e.KEY_KP9)  # GS
        + alt(e.KEY_KP6, e.KEY_KP5)  # A
        + alt(e.KEY_KP0, e.KEY_KP2, e.KEY_KP2, e.KEY_KP8)  # 0228: cp1252 ä
        + alt(e.KEY_KP1, e.KEY_KP3, e.KEY_KP2)  # 132: cp437 ä
        + tap(e.KEY_ENTER)
    )
    assert decode(KeyDecoder("us"), events) == ["\x1dAää"]


def test_unmapped_key_fails_that_code_only() -> None:
    decoder = KeyDecoder("de", device="wedge")
    assert decoder.feed(e.KEY_1, 1) is None
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(e.KEY_F5, 1)
    assert str(caught.value) == (
        "wedge: key event 2 (key code 63): key has no character in layout 'de' "
        "(check the scanner's keyboard layout setting)"
    )
    rest = tap(e.KEY_2) + tap(e.KEY_ENTER) + tap(e.KEY_3) + tap(e.KEY_ENTER)
    assert decode(decoder, rest) == ["3"]


def test_altgr_key_without_a_third_level_is_named() -> None:
    decoder = KeyDecoder("de")
    decoder.feed(e.KEY_RIGHTALT, 1)
    with pytest.raises(ProtocolError, match="AltGr\\+key has no character in layout 'de'"):
        decoder.feed(e.KEY_A, 1)


def test_bad_event_value_and_too_long_code_are_protocol_errors() -> None:
    decoder = KeyDecoder("us", max_chars=3)
    with pytest.raises(ProtocolError, match="key event value 7 is not 0, 1 or 2"):
        decoder.feed(e.KEY_A, 7)
    events = tap(e.KEY_1) + tap(e.KEY_2) + tap(e.KEY_3)
    assert decode(decoder, events) == []
    with pytest.raises(ProtocolError, match="more than 3 characters"):
        decoder.feed(e.KEY_4, 1)
    assert decode(decoder, tap(e.KEY_5) + tap(e.KEY_ENTER) + tap(e.KEY_6) + tap(e.KEY_ENTER)) == [
        "6"
    ]


def test_unknown_layout_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown keyboard layout 'fr'; known: de, us"):
        KeyDecoder("fr")


def _typeable(layout: str) -> str:
    table = LAYOUTS[layout]
    return "".join(sorted({*table.plain.values(), *table.shift.values(), *table.altgr.values()}))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@given(data=st.data())
def test_any_typeable_text_round_trips(layout: str, data: st.DataObject) -> None:
    text = data.draw(st.text(alphabet=_typeable(layout), min_size=1, max_size=30))
    decoder = KeyDecoder(layout)
    assert decode(decoder, typed(layout, text) + tap(e.KEY_ENTER)) == [text]


@given(
    st.lists(st.tuples(st.integers(-5, 800), st.integers(-3, 5)), max_size=200),
    st.sampled_from(sorted(LAYOUTS)),
)
def test_arbitrary_key_events_only_ever_raise_protocol_error(events: Events, layout: str) -> None:
    decoder = KeyDecoder(layout, max_chars=20)
    for code, value in events:
        try:
            text = decoder.feed(code, value)
        except ProtocolError:
            continue
        if text is not None:
            assert 0 < len(text) <= 21  # a trailing dead key may add one
