"""Device checks of `edgectl doctor`: is each configured device node there and usable?

The node must exist, be a character device, and be readable (and, for output devices,
writable) by the user edged runs as (edged.service's User= and groups, see daemonuser.py),
not by whoever runs edgectl: root may open anything. If that user does not exist here, the
nodes are checked as the current user, and a WARN says so.
"""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from edged.config import Config, PaymentSection, PrinterSection, ScannerSection
from edged.ctl import daemonuser
from edged.ctl.checks import Check
from edged.ctl.daemonuser import DaemonUser

SYS_USB_DEVICES = Path("/sys/bus/usb/devices")
UNPLUGGED = (
    "plug it in and switch it on; check the udev link (`ls -l /dev/edged/`, "
    "hardware/udev/60-edged.rules) or devices.{name}.path"
)


class Prober:
    """Whom node checks are for: the daemon's user, or the current one when it is missing."""

    def __init__(self, user: DaemonUser | None, looked_for: str) -> None:
        self.user = user
        self.looked_for = looked_for  # the daemon's user name, found or not
        self.used = False  # a node was checked: the identity is worth a line

    def may_open(self, path: str, st: os.stat_result, write: bool) -> tuple[str, bool, bool]:
        """(who, may they open it, was the kernel asked)."""
        self.used = True
        if self.user is None:
            mode = os.R_OK | (os.W_OK if write else 0)
            return getpass.getuser(), os.access(path, mode), True
        allowed, exact = daemonuser.may_open(self.user, path, st, write)
        return self.user.name, allowed, exact

    def check(self) -> Check:
        """The line that says whom the device lines speak for."""
        if self.user is not None:
            return Check("daemon user", "OK", f"devices checked as {self.user.describe()}")
        current = getpass.getuser()
        root = ", who may open anything" if os.geteuid() == 0 else ""
        return Check(
            "daemon user",
            "WARN",
            f"user {self.looked_for} (edged.service's User=) does not exist here: device "
            f"nodes were checked as user {current} instead{root}",
            "create it (systemd/edged.sysusers.conf, then `systemd-sysusers`), or name the "
            "user edged runs as with --daemon-user",
        )


def _name_of_group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _name_of_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe(path: str, st: os.stat_result) -> str:
    target = os.path.realpath(path)
    shown = path if target == path else f"{path} -> {target}"
    owner = f"{_name_of_user(st.st_uid)}:{_name_of_group(st.st_gid)}"
    return f"{shown} {stat.filemode(st.st_mode)} {owner}"


def node_check(
    name: str, path: str, prober: Prober, *, write: bool, plain_file_ok: bool = False
) -> Check:
    """The device node at `path` (symlinks followed), for reading and maybe writing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        found = (
            f"{path} -> {os.readlink(path)}: the link points nowhere"
            if os.path.islink(path)
            else f"{path} does not exist"
        )
        return Check(name, "FAIL", found, UNPLUGGED.format(name=name))
    except OSError as exc:
        return Check(name, "FAIL", f"cannot look at {path}: {exc.strerror}", "run as root")
    if stat.S_ISREG(st.st_mode) and plain_file_ok:
        return Check(
            name,
            "WARN",
            f"{path} is a plain file: receipts are written into it, nothing is printed",
            "fine for a capture; for a printer point devices.printer.path at its node",
        )
    if not stat.S_ISCHR(st.st_mode):
        return Check(
            name,
            "FAIL",
            f"{path} is not a character device ({stat.filemode(st.st_mode)})",
            f"set devices.{name}.path to the device's node (e.g. /dev/edged/{name})",
        )
    shown = describe(path, st)
    verb = "read and write" if write else "read"
    group = _name_of_group(st.st_gid)
    who, allowed, exact = prober.may_open(path, st, write)
    if allowed:
        return Check(name, "OK", shown)
    how = "" if exact else " (by its mode bits; ACLs were not seen: run doctor as root)"
    if prober.user is None:  # the technician's own access, as a stand-in
        todo = f"join group {group} (`sudo usermod -aG {group} {who}`, then log in again)"
    else:
        todo = (
            f"make the udev rule give it a group user {who} is in (edged.service has dialout, "
            "lp and input) and mode 0660"
        )
        if st.st_gid != 0:
            todo += f", or add group {group} to SupplementaryGroups= of edged.service (a drop-in)"
        todo += "; edged cannot open it until then"
    return Check(name, "FAIL", f"{shown}: user {who} may not {verb} it{how}", todo)


def usb_check(name: str, vendor: int, product: int, prober: Prober) -> Check:
    """A libusb device found by id, and its /dev/bus/usb node."""
    wanted = f"{vendor:04x}:{product:04x}"
    devices = sorted(SYS_USB_DEVICES.iterdir()) if SYS_USB_DEVICES.is_dir() else []
    for device in devices:
        try:
            vendor_id = (device / "idVendor").read_text().strip()
            product_id = (device / "idProduct").read_text().strip()
            if f"{vendor_id}:{product_id}" != wanted:
                continue
            bus = int((device / "busnum").read_text())
            number = int((device / "devnum").read_text())
        except (OSError, ValueError):
            continue  # interfaces and hubs without ids
        check = node_check(name, f"/dev/bus/usb/{bus:03d}/{number:03d}", prober, write=True)
        return Check(name, check.level, f"USB {wanted}: {check.found}", check.todo)
    return Check(
        name,
        "FAIL",
        f"no USB device {wanted} is plugged in",
        f"plug it in and switch it on; `lsusb` lists what is there; check devices.{name}."
        "usb_vendor_id and usb_product_id",
    )


def _printer(cfg: PrinterSection, prober: Prober) -> Check:
    if cfg.driver == "sim":
        return Check("printer", "OK", 'simulated (driver = "sim")')
    if cfg.connection == "network":
        return Check("printer", "OK", f"network printer {cfg.host}:{cfg.port}, no device node")
    if cfg.connection == "usb":
        return usb_check("printer", cfg.usb_vendor_id or 0, cfg.usb_product_id or 0, prober)
    return node_check(
        "printer", cfg.path, prober, write=True, plain_file_ok=cfg.connection == "file"
    )


def _scanner(cfg: ScannerSection, prober: Prober) -> Check:
    if cfg.driver == "sim":
        return Check("scanner", "OK", 'simulated (driver = "sim")')
    return node_check("scanner", cfg.path, prober, write=cfg.driver == "serial")


def _payment(cfg: PaymentSection, prober: Prober) -> Check:
    if cfg.driver == "sim":
        return Check("payment", "OK", f'simulated {cfg.simulate} terminal (driver = "sim")')
    if cfg.connection == "tcp":  # ZVT only; the config refuses Concert over TCP
        return Check("payment", "OK", f"network terminal {cfg.host}:{cfg.port}, no device node")
    return node_check("payment", cfg.path, prober, write=True)


def _with_state(check: Check, device: dict[str, Any] | None) -> Check:
    """A usable node whose device the daemon still cannot use is worth a WARN."""
    if check.level != "OK" or device is None or device["state"] in ("ready", "busy"):
        return check
    detail = f": {device['detail']}" if device.get("detail") else ""
    return Check(
        check.name,
        "WARN",
        f"{check.found}; but edged reports it {device['state']}{detail}",
        f"see `edgectl diag {check.name}` and hardware/README.md",
    )


def device_checks(
    cfg: Config, status: dict[str, Any] | None, daemon_user: str | None = None
) -> list[Check]:
    """One check per configured device, as the daemon's user; its view when it is running.

    `daemon_user` names the user edged runs as (default: from edged.service).
    """
    running = (status or {}).get("devices") or {}
    prober = Prober(*daemonuser.resolve(daemon_user))
    devices = cfg.devices
    checks = []
    if devices.printer is not None:
        checks.append(_with_state(_printer(devices.printer, prober), running.get("printer")))
    if devices.scanner is not None:
        checks.append(_with_state(_scanner(devices.scanner, prober), running.get("scanner")))
    if devices.payment is not None:
        checks.append(_with_state(_payment(devices.payment, prober), running.get("payment")))
    if prober.used:
        checks.insert(0, prober.check())
    return checks or [Check("devices", "OK", "none configured")]
