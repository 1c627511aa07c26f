"""`python -m edged.collector --config FILE [run|status]`."""

import sys

from edged.collector.cli import main

sys.exit(main())
