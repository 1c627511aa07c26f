"""Keyboard-wedge scanners: Linux key events -> characters -> codes, for a given layout (sans-IO).

A USB-HID scanner "types" its code. Key codes are physical key positions
(linux/input-event-codes.h), so the same code means "z" on a US layout and "y" on a German
one: the layout must match the one the scanner is set to. `KeyDecoder` is pure — fed
(code, value) pairs of EV_KEY events, it returns each code when a terminator key (Enter,
keypad Enter, Tab) goes down — so it is tested without evdev or a device.

Beyond plain keys it understands what scanners use to send characters a layout lacks:
Shift and CapsLock, AltGr (third level, German), Ctrl+key for control characters (Ctrl+] is
GS, the GS1 separator), Alt held while typing a decimal number on the keypad (Windows "Alt
codes": 0-127 ASCII, with a leading 0 code page 1252, else 437), and German dead keys
(circumflex, acute, grave), which a scanner follows with a space to get the character itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edged.devices.state import ProtocolError

# Key codes, from linux/input-event-codes.h (evdev.ecodes has the same numbers).
KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_102ND = 86  # the ISO key between left Shift and Z
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100  # AltGr on layouts that have a third level

TERMINATORS = frozenset({KEY_ENTER, KEY_KPENTER, KEY_TAB})
MAX_CODE_CHARS = 8192  # as for serial frames: more than any barcode carries

KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2

# Keypad: digits and operators regardless of Shift (scanners assume NumLock on).
_KEYPAD_DIGITS = {82: "0", 79: "1", 80: "2", 81: "3", 75: "4", 76: "5", 77: "6", 71: "7"}
_KEYPAD_DIGITS |= {72: "8", 73: "9"}
_KEYPAD_OPS = {55: "*", 74: "-", 78: "+", 98: "/"}
KEY_KPDOT = 83


@dataclass(frozen=True, slots=True)
class Layout:
    """Characters per key code: plain, with Shift, with AltGr; dead keys wait for the next."""

    name: str
    plain: Mapping[int, str]
    shift: Mapping[int, str]
    altgr: Mapping[int, str]
    dead: frozenset[str]

    def char(self, code: int, *, shift: bool, caps: bool, altgr: bool) -> str | None:
        if code in _KEYPAD_DIGITS:
            return _KEYPAD_DIGITS[code]
        if altgr:
            return self.altgr.get(code)
        plain = self.plain.get(code)
        if plain is not None and plain.isalpha() and caps:
            shift = not shift  # CapsLock shifts letters only (ü too, as in xkb)
        return self.shift.get(code) if shift else plain


def _layout(
    name: str,
    rows: tuple[tuple[int, str, str], ...],
    altgr: Mapping[int, str],
    dead: str,
    decimal: str,
) -> Layout:
    """A layout from rows of (first key code, plain characters, shifted characters)."""
    plain: dict[int, str] = {}
    shift: dict[int, str] = {}
    for first, lower, upper in rows:
        for i, (a, b) in enumerate(zip(lower, upper, strict=True)):
            plain[first + i] = a
            shift[first + i] = b
    for table in (plain, shift):
        table.update(_KEYPAD_OPS)
        table[KEY_KPDOT] = decimal
    return Layout(name, plain, shift, altgr, frozenset(dead))


LAYOUTS: Mapping[str, Layout] = {
    "us": _layout(
        "us",
        (
            (2, "1234567890-=", "!@#$%^&*()_+"),
            (16, "qwertyuiop[]", "QWERTYUIOP{}"),
            (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
            (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
            (KEY_SPACE, " ", " "),
            (KEY_102ND, "<", ">"),
        ),
        altgr={},
        dead="",
        decimal=".",
    ),
    "de": _layout(
        "de",
        (
            (2, "1234567890ß´", '!"§$%&/()=?`'),
            (16, "qwertzuiopü+", "QWERTZUIOPÜ*"),
            (30, "asdfghjklöä^", "ASDFGHJKLÖÄ°"),
            (43, "#yxcvbnm,.-", "'YXCVBNM;:_"),
            (KEY_SPACE, " ", " "),
            (KEY_102ND, "<", ">"),
        ),
        # AltGr: 2 ² 3 ³ 7 { 8 [ 9 ] 0 } ß \ q @ e € + ~ < | m µ
        altgr={3: "²", 4: "³", 8: "{", 9: "[", 10: "]", 11: "}", 12: "\\", 16: "@", 18: "€"}
        | {27: "~", KEY_102ND: "|", 50: "µ"},
        dead="^´`",  # scanners follow a dead key with a space to get the accent itself
        decimal=",",  # the German keypad has a decimal comma
    ),
}

_SHIFTS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
_CTRLS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL})
_MODIFIERS = _SHIFTS | _CTRLS | {KEY_LEFTALT, KEY_RIGHTALT, 125, 126}  # 125/126: Meta keys
_CONTROLLABLE = frozenset("@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_")  # Ctrl+these: 0x00-0x1F


class KeyDecoder:
    """Turn a scanner's EV_KEY events into codes; one code per terminator key.

    `feed` returns the finished code when a terminator goes down, else None. A key the layout
    has no character for, or a code longer than `max_chars`, raises ProtocolError at once;
    the rest of that code is dropped up to its terminator, and the next code decodes normally.
    Repeats (value 2) and key releases other than modifiers are ignored.
    """

    def __init__(
        self,
        layout: str = "us",
        *,
        device: str = "scanner",
        terminators: frozenset[int] = TERMINATORS,
        max_chars: int = MAX_CODE_CHARS,
    ) -> None:
        if layout not in LAYOUTS:
            known = ", ".join(sorted(LAYOUTS))
            raise ValueError(f"unknown keyboard layout {layout!r}; known: {known}")
        self.layout = LAYOUTS[layout]
        self.device = device
        self.terminators = terminators
        self.max_chars = max_chars
        # Right Alt is AltGr on layouts with a third level, else a second Alt key.
        self._alts = {KEY_LEFTALT} if self.layout.altgr else {KEY_LEFTALT, KEY_RIGHTALT}
        self._held: set[int] = set()
        self._caps = False
        self._chars: list[str] = []
        self._dead: str | None = None  # a dead key waiting for the next key
        self._alt_digits = ""  # keypad digits typed while Alt is held
        self._discarding = False  # after an error, until the terminator
        self._events = 0  # key events fed, for error messages

    def feed(self, code: int, value: int) -> str | None:
        """One EV_KEY event (value 1 down, 0 up, 2 repeat); the finished code or None."""
        self._events += 1
        if value == KEY_REPEAT:
            return None
        if value not in (KEY_UP, KEY_DOWN):
            raise self._error(code, f"key event value {value} is not 0, 1 or 2")
        if code in _MODIFIERS:
            self._modifier(code, value)
            return None
        if value == KEY_UP:
            return None
        if code in self.terminators:
            return self._finish()
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        if not self._discarding:
            self._key(code)
        return None

    def _modifier(self, code: int, value: int) -> None:
        if value == KEY_DOWN:
            self._held.add(code)
            return
        self._held.discard(code)
        if code in self._alts and self._alt_digits:
            number, self._alt_digits = self._alt_digits, ""
            if not self._discarding:
                self._append(_alt_code(number))

    def _key(self, code: int) -> None:
        if self._held & self._alts and code in _KEYPAD_DIGITS:
            self._alt_digits += _KEYPAD_DIGITS[code]
            return
        altgr = bool(self.layout.altgr) and KEY_RIGHTALT in self._held
        shift = bool(self._held & _SHIFTS)
        char = self.layout.char(code, shift=shift, caps=self._caps, altgr=altgr)
        if char is None:
            level = "AltGr+" if altgr else "Shift+" if shift else ""
            raise self._fail(
                code,
                f"{level}key has no character in layout {self.layout.name!r} "
                "(check the scanner's keyboard layout setting)",
            )
        if self._held & _CTRLS:
            if char.upper() not in _CONTROLLABLE:
                raise self._fail(code, f"Ctrl+{char!r} is not a control character")
            char = chr(ord(char.upper()) & 0x1F)
        elif char in self.layout.dead and self._dead is None:
            self._dead = char
            return
        pending, self._dead = self._dead, None
        if pending is not None:
            self._append(pending)
            if char == " ":
                return  # dead key + space: the accent itself
        self._append(char)

    def _append(self, char: str) -> None:
        if len(self._chars) >= self.max_chars:
            raise self._fail(None, f"more than {self.max_chars} characters without a terminator")
        self._chars.append(char)

    def _finish(self) -> str | None:
        pending, self._dead = self._dead, None  # a dead key right before the end counts
        code = "" if self._discarding else "".join(self._chars) + (pending or "")
        self._chars.clear()
        self._alt_digits = ""
        self._discarding = False
        return code or None

    def _fail(self, code: int | None, problem: str) -> ProtocolError:
        """Drop the code being typed until its terminator, and say why."""
        self._chars.clear()
        self._dead = None
        self._alt_digits = ""
        self._discarding = True
        return self._error(code, problem)

    def _error(self, code: int | None, problem: str) -> ProtocolError:
        key = "" if code is None else f" (key code {code})"
        return ProtocolError(f"{self.device}: key event {self._events}{key}: {problem}")


def _alt_code(digits: str) -> str:
    """The character of a Windows Alt code: a leading 0 means code page 1252, else 437."""
    number = int(digits) % 256
    if number < 128:
        return chr(number)
    return bytes([number]).decode("cp1252" if digits.startswith("0") else "cp437", "replace")
