"""Test support: real processes (mosquitto, edged) and a loopback fault proxy."""
