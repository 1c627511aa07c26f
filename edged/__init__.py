"""edged: journal-first POS terminal daemon."""

__version__ = "0.1.0"
