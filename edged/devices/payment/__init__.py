"""Card payment: protocol drivers (ZVT, Telium Concert) behind one interface, and the service."""
