"""Barcode scanners: serial and USB keyboard-wedge (evdev) drivers over a sans-IO codec."""

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
