"""Barcode scanners: serial and USB keyboard-wedge (evdev) drivers over sans-IO decoding.

`framing` cuts a serial byte stream into codes, `keymap` turns key events into text, `codec`
turns one code into a `Scan` (with `gtin` check digits and the `gs1` element-string parser),
`dedupe` drops double reads and `driver` owns the I/O.
"""

from edged.devices.scanner.codec import SYMBOLOGIES, Scan
from edged.devices.scanner.dedupe import DOUBLE_READ_S
from edged.devices.scanner.driver import EvdevScanner, OnScan, SerialScanner
from edged.devices.scanner.keymap import LAYOUTS

__all__ = [
    "DOUBLE_READ_S",
    "LAYOUTS",
    "SYMBOLOGIES",
    "EvdevScanner",
    "OnScan",
    "Scan",
    "SerialScanner",
]
