"""The systemd files: lint-clean, exposure within target, and the directives the daemon relies on.

`systemd-analyze verify` and `security` run on the real unit files (verify on a copy whose
ExecStart points at this venv's `edged`, since /opt/edged does not exist on a dev machine);
the sysusers.d and tmpfiles.d files are applied to a scratch root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.cli import EX_CONFIG, EX_IOERR

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_EDGED = "/opt/edged/bin/edged"
EXPOSURE_TARGET = 2.5  # "OK" in systemd-analyze's words

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is missing (scripts/setup.sh installs Debian's systemd package)",
)

# Every exposure systemd-analyze still reports, and why it is accepted. A new one fails the
# test until it is fixed or explained here (and in the unit's comments).
ACCEPTED = {
    "edged.service": {
        "PrivateNetwork": "it needs the store's network: broker, network printers, terminals",
        "RestrictAddressFamilies_AF_INET_INET6": "the broker and TCP devices",
        "RestrictAddressFamilies_AF_UNIX": "the API socket and sd_notify",
        "RestrictAddressFamilies_AF_NETLINK": "libusb fails to start without its hotplug monitor",
        "PrivateDevices": "it drives real hardware; DevicePolicy=closed limits it instead",
        "DeviceAllow": "the device classes it drives",
        "SupplementaryGroups": "dialout, lp, input: access to those devices",
        "IPAddressDeny": "the broker and devices can be anywhere on the store's LAN",
        "UMask": "group edged (technicians) reads the journal",
        "RootDirectoryOrRootImage": "it runs from the host's /opt/edged venv",
    },
    "edged-collector.service": {
        "PrivateNetwork": "it needs the broker",
        "RestrictAddressFamilies_AF_INET_INET6": "the broker",
        "RestrictAddressFamilies_AF_UNIX": "sd_notify",
        "DeviceAllow": "ProtectClock= adds char-rtc r",
        "IPAddressDeny": "the broker can be local or a chain-wide cluster",
        "UMask": "group edged reads the database (edged collector status)",
        "RootDirectoryOrRootImage": "it runs from the host's /opt/edged venv",
    },
}
UNITS = sorted(ACCEPTED)


def directives(unit: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value, in order (systemd keys may repeat, e.g. DeviceAllow=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (SYSTEMD / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{unit}: keep directives on one line: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{unit}: not a directive: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: str, section: str, key: str) -> str:
    values = directives(unit)[section].get(key, [])
    assert len(values) == 1, f"{unit}: [{section}] {key}= should be set once, is {values}"
    return values[0]


def venv_copy(unit: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's edged, which does exist."""
    edged = Path(sys.executable).parent / "edged"
    assert edged.exists(), f"{edged} is missing: pip install -e . into this venv"
    text = (SYSTEMD / unit).read_text()
    assert INSTALLED_EDGED in text
    copy = tmp_path / unit
    copy.write_text(text.replace(INSTALLED_EDGED, str(edged)))
    return copy


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_verify_is_clean(unit: str, tmp_path: Path) -> None:
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(venv_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == "", "no warning may be left unexplained"


def exposure(unit: str) -> float:
    """The overall exposure systemd-analyze reports (0 best, 10 worst)."""
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", run.stdout)
    assert found, run.stdout + run.stderr
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_exposure_is_ok(unit: str) -> None:
    assert exposure(unit) <= EXPOSURE_TARGET
    # --threshold is in tenths: the exit status enforces the same target independently.
    gate = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={round(EXPOSURE_TARGET * 10)}",
            str(SYSTEMD / unit),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert gate.returncode == 0, gate.stdout[-2000:]


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_every_remaining_exposure_is_accepted(unit: str) -> None:
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--json=short", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    checks = json.loads(run.stdout)
    assert len(checks) > 50, "systemd-analyze's JSON changed shape"
    exposed = {c["json_field"]: c["description"] for c in checks if c["exposure"] is not None}
    unexplained = {k: v for k, v in exposed.items() if k not in ACCEPTED[unit]}
    assert not unexplained, f"harden or explain in ACCEPTED: {unexplained}"


def test_terminal_daemon_directives() -> None:
    unit = "edged.service"
    service = directives(unit)["Service"]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert int(one(unit, "Service", "WatchdogSec")) > 0
    assert one(unit, "Service", "Restart") == "on-failure"
    assert int(one(unit, "Unit", "StartLimitBurst")) > 1
    assert one(unit, "Unit", "StartLimitIntervalSec")
    prevent = one(unit, "Service", "RestartPreventExitStatus").split()
    assert {str(EX_CONFIG), str(EX_IOERR)} <= set(prevent)
    assert one(unit, "Service", "ExecStart") == (
        f"{INSTALLED_EDGED} run --config /etc/edged/edged.toml"
    )
    assert (one(unit, "Service", "User"), one(unit, "Service", "Group")) == ("edged", "edged")
    assert set(one(unit, "Service", "SupplementaryGroups").split()) == {"dialout", "lp", "input"}
    for key in ("StateDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
        assert one(unit, "Service", key) == "edged"
    # The devices stay visible, but only the classes edged drives are allowed.
    assert "PrivateDevices" not in service
    assert one(unit, "Service", "DevicePolicy") == "closed"
    assert set(service["DeviceAllow"]) == {
        "char-ttyUSB rw",
        "char-ttyACM rw",
        "char-ttyS rw",
        "char-usb rw",
        "char-usb_device rw",
        "char-input r",
    }
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    families = set(one(unit, "Service", "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families  # sd_notify, the API, the broker
    assert "yes" not in service.get("PrivateNetwork", [])


def test_collector_directives() -> None:
    unit = "edged-collector.service"
    service = directives(unit)["Service"]
    assert one(unit, "Service", "Type") == "notify"  # `edged collector` sends READY=1
    assert str(EX_CONFIG) in one(unit, "Service", "RestartPreventExitStatus").split()
    assert one(unit, "Service", "ExecStart") == (
        f"{INSTALLED_EDGED} collector --config /etc/edged/collector.toml"
    )
    assert one(unit, "Service", "PrivateDevices") == "yes"
    assert one(unit, "Service", "DevicePolicy") == "closed"
    assert "DeviceAllow" not in service
    assert "SupplementaryGroups" not in service
    assert one(unit, "Service", "CapabilityBoundingSet") == ""


def test_sysusers_matches_the_unit() -> None:
    lines = [
        line.split()
        for line in (SYSTEMD / "edged.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    members = {fields[2] for fields in lines if fields[:2] == ["m", "edged"]}
    groups = set(one("edged.service", "Service", "SupplementaryGroups").split())
    assert members == groups


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers/systemd-tmpfiles are missing (Debian's systemd package has them)",
)
def test_sysusers_and_tmpfiles_on_a_scratch_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\nlp:x:7:\ninput:x:105:\n")
    for kind in ("sysusers", "tmpfiles"):
        target = root / f"usr/lib/{kind}.d/edged.conf"
        target.parent.mkdir(parents=True)
        shutil.copy(SYSTEMD / f"edged.{kind}.conf", target)

    subprocess.run(["systemd-sysusers", f"--root={root}"], check=True, timeout=60)
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
    groups = {line.split(":")[0]: line.strip().split(":") for line in (root / "etc/group").open()}
    edged = users["edged"]
    assert int(edged[2]) < 1000, "a system user"
    assert (edged[5], edged[6].strip()) == ("/var/lib/edged", "/usr/sbin/nologin")
    for group in ("dialout", "lp", "input"):
        assert "edged" in groups[group][3].split(","), group

    if os.geteuid() != 0:
        pytest.skip("applying tmpfiles.d (chown to edged) needs root")
    subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}"], check=True, timeout=60)
    gid = int(groups["edged"][2])
    config_dir = (root / "etc/edged").stat()
    assert (config_dir.st_mode & 0o7777, config_dir.st_uid, config_dir.st_gid) == (0o750, 0, gid)
    state_dir = (root / "var/lib/edged").stat()
    assert (state_dir.st_mode & 0o7777, state_dir.st_uid) == (0o750, int(edged[2]))
