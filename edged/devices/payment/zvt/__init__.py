"""ZVT, the ECR interface of German, Austrian and Swiss card terminals (spec PA00P015).

`codec` is the wire format (sans-IO), `protocol` the ECR's side of one command (sans-IO),
`transport` the serial and TCP lines, `driver` the PaymentTerminal built on them.
"""

from edged.devices.payment.zvt.driver import DEFAULT_CONFIG, TerminalReport, ZvtTerminal
from edged.devices.payment.zvt.transport import DEFAULT_PORT, ZvtTimings

__all__ = ["DEFAULT_CONFIG", "DEFAULT_PORT", "TerminalReport", "ZvtTerminal", "ZvtTimings"]
