"""Device checks of `edgectl doctor`: is each configured device node there and usable?

The node must exist, be a character device, and be readable (and, for output devices,
writable) by whoever runs edgectl; if the daemon's user `edged` exists, its access is
checked too, from the node's mode and the group database.
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
from edged.ctl.checks import Check

DAEMON_USER = "edged"
SYS_USB_DEVICES = Path("/sys/bus/usb/devices")
UNPLUGGED = (
    "plug it in and switch it on; check the udev link (`ls -l /dev/edged/`, "
    "hardware/udev/60-edged.rules) or devices.{name}.path"
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


def _describe(path: str, st: os.stat_result) -> str:
    target = os.path.realpath(path)
    shown = path if target == path else f"{path} -> {target}"
    owner = f"{_name_of_user(st.st_uid)}:{_name_of_group(st.st_gid)}"
    return f"{shown} {stat.filemode(st.st_mode)} {owner}"


def _daemon_cannot(st: os.stat_result, write: bool) -> bool:
    """True if user edged exists, is not us, and the node's mode keeps it out."""
    try:
        daemon = pwd.getpwnam(DAEMON_USER)
    except KeyError:
        return False
    if daemon.pw_uid == os.geteuid():
        return False  # os.access already answered for it
    groups = {daemon.pw_gid} | {g.gr_gid for g in grp.getgrall() if DAEMON_USER in g.gr_mem}
    if st.st_uid == daemon.pw_uid:
        need = stat.S_IRUSR | (stat.S_IWUSR if write else 0)
    elif st.st_gid in groups:
        need = stat.S_IRGRP | (stat.S_IWGRP if write else 0)
    else:
        need = stat.S_IROTH | (stat.S_IWOTH if write else 0)
    return st.st_mode & need != need


def node_check(name: str, path: str, *, write: bool, plain_file_ok: bool = False) -> Check:
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
    shown = _describe(path, st)
    verb = "read and write" if write else "read"
    group = _name_of_group(st.st_gid)
    if not os.access(path, os.R_OK | (os.W_OK if write else 0)):
        user = getpass.getuser()
        return Check(
            name,
            "FAIL",
            f"{shown}: user {user} may not {verb} it",
            f"join group {group} (`usermod -aG {group} {user}`, then log in again) or run as root",
        )
    if _daemon_cannot(st, write):
        return Check(
            name,
            "WARN",
            f"{shown}: user {DAEMON_USER} is not in group {group} and may not {verb} it",
            f"add group {group} to SupplementaryGroups= of edged.service (a drop-in), or make "
            "the udev rule set the group edged.service has (dialout, lp or input)",
        )
    return Check(name, "OK", shown)


def usb_check(name: str, vendor: int, product: int) -> Check:
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
        check = node_check(name, f"/dev/bus/usb/{bus:03d}/{number:03d}", write=True)
        return Check(name, check.level, f"USB {wanted}: {check.found}", check.todo)
    return Check(
        name,
        "FAIL",
        f"no USB device {wanted} is plugged in",
        f"plug it in and switch it on; `lsusb` lists what is there; check devices.{name}."
        "usb_vendor_id and usb_product_id",
    )


def _printer(cfg: PrinterSection) -> Check:
    if cfg.driver == "sim":
        return Check("printer", "OK", 'simulated (driver = "sim")')
    if cfg.connection == "network":
        return Check("printer", "OK", f"network printer {cfg.host}:{cfg.port}, no device node")
    if cfg.connection == "usb":
        return usb_check("printer", cfg.usb_vendor_id or 0, cfg.usb_product_id or 0)
    return node_check("printer", cfg.path, write=True, plain_file_ok=cfg.connection == "file")


def _scanner(cfg: ScannerSection) -> Check:
    if cfg.driver == "sim":
        return Check("scanner", "OK", 'simulated (driver = "sim")')
    return node_check("scanner", cfg.path, write=cfg.driver == "serial")


def _payment(cfg: PaymentSection) -> Check:
    if cfg.driver == "sim":
        return Check("payment", "OK", f'simulated {cfg.simulate} terminal (driver = "sim")')
    if cfg.connection == "tcp":  # ZVT only; the config refuses Concert over TCP
        return Check("payment", "OK", f"network terminal {cfg.host}:{cfg.port}, no device node")
    return node_check("payment", cfg.path, write=True)


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


def device_checks(cfg: Config, status: dict[str, Any] | None) -> list[Check]:
    """One check per configured device; the daemon's view of it when it is running."""
    running = (status or {}).get("devices") or {}
    devices = cfg.devices
    checks = []
    if devices.printer is not None:
        checks.append(_with_state(_printer(devices.printer), running.get("printer")))
    if devices.scanner is not None:
        checks.append(_with_state(_scanner(devices.scanner), running.get("scanner")))
    if devices.payment is not None:
        checks.append(_with_state(_payment(devices.payment), running.get("payment")))
    return checks or [Check("devices", "OK", "none configured")]
