"""The terminal's hardware: printer and drawer, scanner, payment reader; each supervised alone."""
