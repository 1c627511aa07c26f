"""Who edged runs as, and whether that user may open a path: what `doctor` checks devices with.

Root may open anything, so a check as the technician's root says nothing about the daemon.
The daemon's user and groups come from edged.service (`systemctl show`: User=, Group=,
SupplementaryGroups=, drop-ins included) when systemd has the unit, else from the shipped
unit's values; the group database adds the user's own memberships (edged.sysusers.conf).

When edgectl runs as root, the question goes to the kernel: a child process with exactly
those ids runs `test -r/-w PATH` (access(2): mode, ACLs, every folder on the way), and opens
nothing, so a serial line's DTR is not toggled. Without root that is impossible; then the
answer is computed from the node's mode bits and owner, which ignores ACLs (and says so).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass

DAEMON_UNIT = "edged.service"
# The shipped unit's values (systemd/edged.service), used when systemd cannot be asked.
UNIT_USER = "edged"
UNIT_GROUP = "edged"
UNIT_SUPPLEMENTARY_GROUPS = ("dialout", "lp", "input")
SYSTEMCTL_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class DaemonUser:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]  # supplementary: the group database and the unit's settings
    source: str  # where the identity comes from, for people

    def describe(self) -> str:
        names = sorted(_group_name(g) for g in self.groups | {self.gid})
        return f"user {self.name} (groups {', '.join(names)}; from {self.source})"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _unit_settings() -> dict[str, str] | None:
    """User=, Group=, SupplementaryGroups= of the loaded unit; None if systemd cannot say."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        done = subprocess.run(
            [systemctl, "show", DAEMON_UNIT, "--property=LoadState,User,Group,SupplementaryGroups"],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    settings = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or settings.get("LoadState") != "loaded":
        return None
    return settings


def _gids(names: list[str]) -> frozenset[int]:
    """Group names to ids; a group this machine lacks is skipped (nothing can be in it)."""
    gids = set()
    for name in names:
        try:
            gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            continue
    return frozenset(gids)


def resolve(name: str | None) -> tuple[DaemonUser | None, str]:
    """The daemon's identity (None if its user does not exist here) and the user name looked for.

    `name` (doctor --daemon-user) wins; then edged.service as systemd has it; then the
    shipped unit's User=edged with its groups.
    """
    settings = None if name else _unit_settings()
    if name:
        source, user, group, extra = "--daemon-user", name, "", []
    elif settings is not None:
        source = f"systemctl show {DAEMON_UNIT}"
        user = settings.get("User") or "root"
        group = settings.get("Group", "")
        extra = settings.get("SupplementaryGroups", "").split()
    else:
        source = f"the shipped {DAEMON_UNIT}"
        user, group, extra = UNIT_USER, UNIT_GROUP, list(UNIT_SUPPLEMENTARY_GROUPS)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None, user
    gid = entry.pw_gid
    if group:
        gid = next(iter(_gids([group])), gid)
    own = frozenset(os.getgrouplist(entry.pw_name, gid))
    return DaemonUser(user, entry.pw_uid, gid, own | _gids(extra), source), user


def _from_mode(user: DaemonUser, st: os.stat_result, write: bool) -> bool:
    """May `user` open a node with this stat? From mode bits and owner only (no ACLs)."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        need = stat.S_IRUSR | (stat.S_IWUSR if write else 0)
    elif st.st_gid == user.gid or st.st_gid in user.groups:
        need = stat.S_IRGRP | (stat.S_IWGRP if write else 0)
    else:
        need = stat.S_IROTH | (stat.S_IWOTH if write else 0)
    return st.st_mode & need == need


def _probe(user: DaemonUser, path: str, write: bool) -> bool | None:
    """access(2) in a child running as `user`; None when the child cannot be run."""
    test = shutil.which("test", path="/usr/bin:/bin")
    if test is None:
        return None
    args = [test, "-r", path, "-a", "-w", path] if write else [test, "-r", path]
    try:
        done = subprocess.run(
            args,
            user=user.uid,
            group=user.gid,
            extra_groups=sorted(user.groups),
            cwd="/",
            env={},
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def may_open(user: DaemonUser, path: str, st: os.stat_result, write: bool) -> tuple[bool, bool]:
    """(may `user` read, and if `write` also write, `path`; was the kernel asked?)"""
    mode = os.R_OK | (os.W_OK if write else 0)
    if user.uid == os.geteuid() and user.gid == os.getegid():
        return os.access(path, mode), True
    if os.geteuid() == 0:
        answer = _probe(user, path, write)
        if answer is not None:
            return answer, True
    return _from_mode(user, st, write), False
