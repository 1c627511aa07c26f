"""`doctor`'s check of the broker password and TLS key files: the daemon reads them, nobody else.

The rule (README, "Installing on a terminal"): mode 0600, owned by the daemon's user (edged),
written by root. Technicians are in group edged for the socket and the journal, so a file the
group may read would give every technician the till's broker login; a file the daemon's user
may not read stops the uplink. `/etc` is read-only to the daemon (ProtectSystem=strict), so
owning the file does not let edged change it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edged.config import Config
from edged.ctl import daemonuser
from edged.ctl.checks import Check
from edged.ctl.nodes import Prober, describe

SECRET_MODE = 0o600


def _fix(path: str, user: str) -> str:
    return f"chown {user}:{user} {path} && chmod 0600 {path}"


def _one(name: str, path: str, prober: Prober) -> Check:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(name, "FAIL", f"{path} does not exist", "create it, or fix the config")
    except PermissionError:
        return Check(
            name, "WARN", f"cannot look at {path} as this user", "run `sudo edgectl doctor`"
        )
    shown = describe(path, st)
    who, readable, exact = prober.may_open(path, st, write=False)
    how = "" if exact else " (from its mode and owner; ACLs not checked: run as root)"
    if not readable:
        return Check(
            name,
            "FAIL",
            f"{shown}: user {who} may not read it{how}; edged cannot log in to the broker",
            _fix(path, prober.looked_for),
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        return Check(
            name,
            "WARN",
            f"{shown}: other users than its owner may read it (technicians in group "
            f"{daemonuser.UNIT_GROUP} too)",
            _fix(path, prober.looked_for),
        )
    return Check(name, "OK", f"{shown}: only its owner reads it; user {who} may")


def secret_file_checks(cfg: Config, daemon_user: str | None = None) -> list[Check]:
    """The uplink's password file and TLS key file, if configured, as the daemon's user."""
    up = cfg.uplink
    if up is None:
        return []
    prober = Prober(*daemonuser.resolve(daemon_user))
    named = (("password file", up.password_file), ("key file", up.key_file))
    return [_one(name, path, prober) for name, path in named if path]


def closed_to_me(path: str | Path) -> bool:
    """True if `path` is there but this user may not read it (itself, or a folder on the way)."""
    try:
        os.stat(path)
    except PermissionError:
        return True
    except OSError:
        return False
    return not os.access(path, os.R_OK)
