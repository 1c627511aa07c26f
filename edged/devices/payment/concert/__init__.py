"""Ingenico Telium "Concert" E+ (France): sans-IO codec and link, and the serial driver."""

from edged.devices.payment.concert.driver import ConcertSettings, ConcertTerminal, NotSupported

__all__ = ["ConcertSettings", "ConcertTerminal", "NotSupported"]
