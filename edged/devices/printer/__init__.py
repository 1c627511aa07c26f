"""Receipt printer and cash drawer: ESC/POS bytes out, real status in, durable print jobs."""

from edged.devices.printer.escpos_cache import use_shared_cache

use_shared_cache()
