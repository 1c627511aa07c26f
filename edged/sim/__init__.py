"""Device simulators that speak the real wire protocols over ptys (tests, demo, driver = "sim")."""
