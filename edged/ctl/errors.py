"""edgectl's exit statuses (the README documents them) and the error that carries one."""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEM = 1  # a check failed or a problem was found (doctor FAIL, broken chain, not ready)
EXIT_CANNOT = 2  # usage error, or the command could not run (daemon unreachable, bad config)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it
# What a technician outside the daemon's group must do: the socket and journal are group edged.
JOIN_EDGED = "join group edged (`sudo usermod -aG edged $USER`, then log in again) or run as root"


class CtlError(Exception):
    """A problem edgectl reports in one line on stderr, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_CANNOT) -> None:
        super().__init__(message)
        self.status = status


class NoPermissionError(CtlError):
    """The daemon's socket (or its folder) is closed to this user: a group, not a dead daemon."""
