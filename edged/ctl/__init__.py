"""`edgectl`: the field technician's view of a terminal, over the local API and the journal file."""

from edged.ctl.cli import main

__all__ = ["main"]
