"""ZVT, the ECR interface of German, Austrian and Swiss card terminals (spec PA00P015).

The wire format is sans-IO, one layer a module: `framing` (serial DLE frames, CRC, ACK/NAK),
`apdu`, `fields` (BMP fields, BCD) and `tlv`, then `commands` (ECR -> PT) and `messages`
(PT -> ECR); `codes` and `currencies` are the code tables, `errors` the parsers' exception.
`protocol` is the ECR's side of one command (sans-IO), `transport` the serial and TCP lines,
`driver` the PaymentTerminal built on them.
"""

from edged.devices.payment.zvt.driver import DEFAULT_CONFIG, TerminalReport, ZvtTerminal
from edged.devices.payment.zvt.transport import DEFAULT_PORT, ZvtTimings

__all__ = ["DEFAULT_CONFIG", "DEFAULT_PORT", "TerminalReport", "ZvtTerminal", "ZvtTimings"]
