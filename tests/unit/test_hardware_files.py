"""hardware/: every device profile is a valid config fragment, and the udev rules are well formed.

A profile is loaded merged into a minimal config through `edged.config.load_config`, so a
wrong key, type or value fails here, not on a till; printer profiles are also checked against
python-escpos (profile name, code page, columns). The udev rules are checked with a small
parser (udev's grammar: KEY{attr}OP"value" pairs separated by commas) and with
`udevadm verify` where this udev has it (systemd 254 and later).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edged.config import Config, load_config
from edged.devices.printer.layout import printer_facts

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "hardware/profiles").glob("*.toml"))
RULES = ROOT / "hardware/udev/60-edged.rules"
MINIMAL = '[terminal]\nstore_id = "S1"\nterminal_id = "T1"\n\n'

PAIR = re.compile(r'(?P<key>[A-Z_]+(?:\{[^}]+\})?)(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"')
HEX_IDS = re.compile(r"^[0-9a-f]{4}(\|[0-9a-f]{4})*$")
LINKS = {"printer", "printer-usb", "scanner", "payment"}
# The group a node gets, by the subsystem it is in; edged.service joins exactly these groups.
GROUP_BY_SUBSYSTEM = {"tty": "dialout", "usbmisc": "lp", "usb": "lp", "input": "input"}


def load_profile(profile: Path, tmp_path: Path) -> Config:
    config = tmp_path / "edged.toml"
    config.write_text(MINIMAL + profile.read_text())
    return load_config(config)


def test_there_are_profiles_for_every_device_kind(tmp_path: Path) -> None:
    kinds = set()
    for profile in PROFILES:
        devices = load_profile(profile, tmp_path).devices
        kinds |= {k for k in ("printer", "scanner", "payment") if getattr(devices, k)}
    assert kinds == {"printer", "scanner", "payment"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_is_a_valid_config_fragment(profile: Path, tmp_path: Path) -> None:
    text = profile.read_text()
    assert text.startswith("# "), "start with a comment naming the model and its connection"
    devices = load_profile(profile, tmp_path).devices
    present = [d for d in (devices.printer, devices.scanner, devices.payment) if d is not None]
    assert len(present) == 1, "one device per profile, so that profiles combine"
    device = present[0]
    assert device.driver != "sim", "profiles are for real devices"
    if devices.printer is not None:
        printer = devices.printer
        facts = printer_facts(printer.profile, printer.codepage, printer.columns)
        assert facts.can_print("€"), "receipts carry euro amounts: pick a code page with €"
    # A device opened by path (scanners always) must use a link the udev rules make.
    by_path = getattr(device, "connection", "serial") in ("serial", "file")
    if by_path and device.path.startswith("/dev/edged/"):
        assert device.path.removeprefix("/dev/edged/") in links_made_by_the_rules()


def rule_lines() -> list[tuple[int, list[tuple[str, str, str]]]]:
    """(line number, [(key, op, value), ...]) for every rule; the whole line must parse."""
    rules = []
    for number, raw in enumerate(RULES.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: keep each rule on one line"
        pairs = []
        rest = line
        while rest:
            match = PAIR.match(rest)
            assert match, f"line {number}: cannot parse {rest!r}"
            pairs.append((match["key"], match["op"], match["value"]))
            rest = rest[match.end() :]
            if rest:
                assert rest.startswith(", "), f"line {number}: expected ', ' before {rest!r}"
                rest = rest[2:]
        rules.append((number, pairs))
    return rules


def links_made_by_the_rules() -> set[str]:
    return {
        value.removeprefix("edged/")
        for _, pairs in rule_lines()
        for key, op, value in pairs
        if key == "SYMLINK"
    }


def test_every_naming_rule_matches_a_vendor_and_sets_group_and_mode() -> None:
    labels, gotos, naming = set(), set(), 0
    for number, pairs in rule_lines():
        keys = {key: (op, value) for key, op, value in pairs}
        where = f"{RULES.name}:{number}"
        if "LABEL" in keys:
            labels.add(keys["LABEL"][1])
            continue
        if "GOTO" in keys:
            gotos.add(keys["GOTO"][1])
            continue
        if "IMPORT{builtin}" in keys:  # a helper rule: it names nothing
            assert "SYMLINK" not in keys and "SUBSYSTEM" in keys, where
            continue
        naming += 1
        assert keys.get("SUBSYSTEM", ("",))[0] == "==", f"{where}: match a SUBSYSTEM"
        subsystem = keys["SUBSYSTEM"][1]
        vendor = keys.get("ATTRS{idVendor}") or keys.get("ATTR{idVendor}")
        assert vendor is not None and vendor[0] == "==", f"{where}: match a vendor id"
        assert HEX_IDS.match(vendor[1]), f"{where}: vendor ids are 4 lower-case hex digits"
        product = keys.get("ATTRS{idProduct}") or keys.get("ATTR{idProduct}")
        if product is not None:
            assert HEX_IDS.match(product[1]), f"{where}: product ids are 4 lower-case hex digits"
        op, link = keys.get("SYMLINK", ("", ""))
        assert op == "+=", f'{where}: SYMLINK+="edged/..." (+=, so other links stay)'
        assert link.removeprefix("edged/") in LINKS, f"{where}: link {link!r}"
        assert keys.get("GROUP") == ("=", GROUP_BY_SUBSYSTEM[subsystem]), where
        assert keys.get("MODE") == ("=", "0660"), where
        if subsystem == "usb":  # raw USB nodes: only the device's own ids (see the rules)
            assert keys.get("ENV{DEVTYPE}") == ("==", "usb_device"), where
            assert "ATTR{idVendor}" in keys, where
    assert naming >= 10
    assert gotos <= labels, "every GOTO needs its LABEL"
    assert links_made_by_the_rules() == LINKS


def test_rule_groups_are_the_daemons_groups() -> None:
    unit = (ROOT / "systemd/edged.service").read_text()
    found = re.search(r"^SupplementaryGroups=(.*)$", unit, re.MULTILINE)
    assert found
    used = {value for _, pairs in rule_lines() for key, _, value in pairs if key == "GROUP"}
    assert used == set(found.group(1).split())


def udevadm_verify() -> str | None:
    """`udevadm verify` exists from systemd 254 on; Debian 12 ships 252."""
    if shutil.which("udevadm") is None:
        return None
    help_text = subprocess.run(
        ["udevadm", "--help"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return "udevadm" if re.search(r"^\s+verify\s", help_text, re.MULTILINE) else None


@pytest.mark.skipif(
    udevadm_verify() is None, reason="this udev has no `udevadm verify` (it needs systemd 254+)"
)
def test_udevadm_verify_accepts_the_rules() -> None:
    run = subprocess.run(
        ["udevadm", "verify", "--resolve-names=never", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
