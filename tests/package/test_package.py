"""The Debian package, for real: built by scripts/package, installed with dpkg on this machine,
upgraded with unsent sales in the journal, removed, purged (refused, then forced).

Slow (two builds, 30 to 50 s each on an idle machine) and it changes the machine while it
runs, so it is marked `package` and leaves the machine as it found it: it purges the package
even on failure, and removes the user and groups the package created. It skips where it is not
root, where dpkg is missing, and where edged's folders or package are there already (it never
touches those).
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.client import ApiClient
from tests.support.ports import free_port
from tests.support.sales import cash_sale

# Two package builds, install, upgrade and purge: 77 s on a quiet machine, 6 min under load.
pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
SUFFIX = "+1"  # the rebuilt, newer version the test upgrades to
UNITS = ("edged.service", "edged-collector.service")
# Everything of edged's outside the package's file list; the test never touches it if present.
PRESENT_BEFORE = ("/etc/edged", "/var/lib/edged", "/var/cache/edged", "/opt/edged", "/run/edged")
SOCKET = "/run/edged/edged.sock"
JOURNAL = "/var/lib/edged/journal.db"
FORCE_FILE = "/var/lib/edged/purge-unsent-sales"
SALES = 3
TIMEOUT_S = 300.0  # a guard against hangs, never a measurement
CONFIG = """[terminal]
store_id = "S1"
terminal_id = "T1"
[journal]
adopt = false
[uplink]
host = "127.0.0.1"
port = {port}
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it installs the package with dpkg -i"
    if shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        return "no dpkg: not a Debian system"
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 to build the package's venv with"
    if subprocess.run(["dpkg", "-s", "edged"], capture_output=True, check=False).returncode == 0:
        return "the edged package is installed (or its config is left): the test leaves it alone"
    present = [p for p in PRESENT_BEFORE if os.path.lexists(p)]
    if present:
        return f"{', '.join(present)} exist already: the test never touches an existing edged"
    return None


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def timed(what: str, timings: dict[str, float], *args: str) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    done = run(*args)
    timings[what] = time.monotonic() - start
    return done


def _exists(kind: str, name: str) -> bool:
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def machine() -> Iterator[dict[str, float]]:
    """Skips unless the test may install; afterwards the machine is as it was (purged)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    before = {
        ("user", "edged"): _exists("user", "edged"),
        **{("group", g): _exists("group", g) for g in ("edged", "dialout", "lp", "input")},
    }
    timings: dict[str, float] = {}
    try:
        yield timings
    finally:
        if run("dpkg", "-s", "edged", check=False).returncode == 0:
            if os.path.isdir("/var/lib/edged"):
                Path(FORCE_FILE).touch()
            subprocess.run(["dpkg", "--purge", "edged"], capture_output=True, check=False)
        shutil.rmtree("/run/edged", ignore_errors=True)
        if not before[("user", "edged")] and _exists("user", "edged"):
            subprocess.run(["userdel", "edged"], check=False)
        for (kind, name), existed in before.items():
            if kind == "group" and not existed and _exists("group", name):
                subprocess.run(["groupdel", name], check=False)
        print("\npackage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def build(out: Path, timings: dict[str, float], suffix: str = "") -> Path:
    what = f"build{suffix}"
    done = timed(
        what,
        timings,
        str(REPO / "scripts/package"),
        "--out",
        str(out),
        *(["--version-suffix", suffix] if suffix else []),
    )
    deb = Path(done.stdout.strip().splitlines()[-1])
    assert (
        deb.name
        == f"edged_{VERSION}{suffix}_{run('dpkg', '--print-architecture').stdout.strip()}.deb"
    )
    return deb


def mode(path: str) -> tuple[str, str, str]:
    st = os.stat(path)
    return (
        oct(stat.S_IMODE(st.st_mode)),
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
    )


def outbox() -> dict[str, int]:
    done = run(
        "/usr/bin/edgectl", "outbox", "--json", "--journal", JOURNAL, "--socket", "/nonexistent"
    )
    report = json.loads(done.stdout)
    return {"pending": report["pending"], "acked_upto": report["acked_upto"]}


def enabled_links() -> list[str]:
    return sorted(
        str(p) for p in Path("/etc/systemd/system").glob("*/*") if p.name in UNITS
    ) + sorted(str(p) for p in Path("/etc/systemd/system").glob("edged*"))


async def _commit_sales(count: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with ApiClient(SOCKET) as client:
                for _ in range(count):
                    await client.call("sale.commit", {"sale": cash_sale()})
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def sell_offline(count: int) -> None:
    """The installed daemon, as user edged, journals `count` sales no store acknowledges."""
    os.makedirs("/run/edged", mode=0o750)  # what RuntimeDirectory= does under systemd
    shutil.chown("/run/edged", "edged", "edged")
    daemon = subprocess.Popen(
        # setpriv execs edged itself (runuser would stay its parent and die of the SIGTERM).
        ["setpriv", "--reuid=edged", "--regid=edged", "--init-groups", "/usr/bin/edged", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        asyncio.run(_commit_sales(count))
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output.decode(errors="replace")[-2000:]


def installed_version() -> str:
    return run("dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "edged").stdout.strip()


def test_install_upgrade_remove_purge(machine: dict[str, float], tmp_path: Path) -> None:
    deb = build(tmp_path / "v1", machine)
    newer = build(tmp_path / "v2", machine, SUFFIX)
    machine["deb MiB"] = deb.stat().st_size / 2**20
    if shutil.which("lintian"):  # no error-level tag; the package's overrides say why for four
        lint = run("lintian", "--fail-on", "error", str(deb), check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # --- install: files, user, groups, modes; nothing enabled or started.
    timed("install", machine, "dpkg", "-i", str(deb))
    assert installed_version() == f"{VERSION} ii"
    for command in ("edged", "edgectl"):
        assert os.readlink(f"/usr/bin/{command}") == f"/opt/edged/bin/{command}"
        assert os.readlink("/opt/edged/bin/python3") == "/usr/bin/python3"
    assert run("/usr/bin/edgectl", "--version").stdout.strip() == f"edgectl {VERSION}"
    assert run("/usr/bin/edged", "--version").stdout.strip() == f"edged {VERSION}"
    profiles = sorted(p.name for p in (REPO / "hardware/profiles").glob("*.toml"))
    assert sorted(os.listdir("/usr/share/edged/profiles")) == profiles
    for path in (
        "/lib/udev/rules.d/60-edged.rules",
        "/usr/lib/sysusers.d/edged.conf",
        "/usr/lib/tmpfiles.d/edged.conf",
        "/usr/share/man/man8/edged.8.gz",
        "/usr/share/man/man8/edgectl.8.gz",
        "/usr/share/bash-completion/completions/edgectl",
        "/usr/share/doc/edged/examples/collector.toml",
        "/usr/share/doc/edged/copyright",
    ):
        assert os.path.isfile(path), path
    assert "/etc/edged/edged.toml" in run("dpkg-query", "-W", "-f=${Conffiles}", "edged").stdout
    assert mode("/etc/edged") == ("0o750", "root", "edged")
    assert mode("/etc/edged/edged.toml") == ("0o640", "root", "edged")
    assert mode("/var/lib/edged") == ("0o750", "edged", "edged")
    user = pwd.getpwnam("edged")
    assert (user.pw_dir, user.pw_shell) == ("/var/lib/edged", "/usr/sbin/nologin")
    for group in ("dialout", "lp", "input"):
        assert "edged" in grp.getgrnam(group).gr_mem, group
    assert enabled_links() == [], "the package enabled a unit nobody asked for"
    assert list(Path("/opt/edged").rglob("__pycache__/*.pyc")), "postinst compiles the bytecode"
    if shutil.which("systemd-analyze"):  # with man: the units' Documentation= must resolve
        units = [f"/lib/systemd/system/{u}" for u in UNITS]
        verify = run("systemd-analyze", "verify", *units, check=False)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    # --- sales the store never acknowledged (the broker's port is closed).
    Path("/etc/edged/edged.toml").write_text(CONFIG.format(port=free_port()))
    config = Path("/etc/edged/edged.toml").read_text()
    sell_offline(SALES)
    assert outbox() == {"pending": SALES, "acked_upto": 0}

    # --- upgrade to a rebuilt, newer version: config and journal kept, nothing lost.
    timed("upgrade", machine, "dpkg", "-i", str(newer))
    assert installed_version() == f"{VERSION}{SUFFIX} ii"
    assert Path("/etc/edged/edged.toml").read_text() == config
    assert outbox() == {"pending": SALES, "acked_upto": 0}
    run("/usr/bin/edgectl", "journal", "verify", "--journal", JOURNAL)
    assert mode(JOURNAL)[1:] == ("edged", "edged")
    assert enabled_links() == []

    # --- remove keeps the data and the config.
    timed("remove", machine, "dpkg", "--remove", "edged")
    assert not os.path.lexists("/usr/bin/edgectl") and not os.path.exists("/opt/edged")
    assert Path("/etc/edged/edged.toml").read_text() == config
    assert Path("/var/lib/edged/.unsent-at-removal").read_text().strip() == str(SALES)
    assert os.path.isfile(JOURNAL)

    # --- purge refuses while sales are unsent, says how many and how to force.
    refused = run("dpkg", "--purge", "edged", check=False)
    assert refused.returncode != 0
    assert f"holds {SALES} sales the store has not" in refused.stderr
    assert f"touch {FORCE_FILE}" in refused.stderr
    assert os.path.isfile(JOURNAL)
    assert installed_version().endswith(" pc"), "dpkg keeps it for a purge that can be retried"

    Path(FORCE_FILE).touch()
    timed("purge", machine, "dpkg", "--purge", "edged")

    # --- left: only the user edged and its groups (files elsewhere may still be theirs).
    assert run("dpkg", "-s", "edged", check=False).returncode != 0
    for path in (
        *PRESENT_BEFORE,
        "/usr/bin/edged",
        "/usr/bin/edgectl",
        *(f"/lib/systemd/system/{u}" for u in UNITS),
        "/usr/lib/sysusers.d/edged.conf",
        "/usr/lib/tmpfiles.d/edged.conf",
        "/lib/udev/rules.d/60-edged.rules",
        "/usr/share/doc/edged",
        "/usr/share/edged",
    ):
        if path == "/run/edged":
            continue  # the test made it, as systemd would; the fixture removes it
        assert not os.path.lexists(path), f"{path} left after purge"
    assert enabled_links() == []
    assert not list(Path("/var/lib/systemd/deb-systemd-helper-enabled").glob("**/edged*"))
    assert not list(Path("/var/lib/systemd/deb-systemd-helper-masked").glob("edged*"))
    assert _exists("user", "edged"), "policy: purge keeps the system user"
    print(f"\n{deb.name}: {machine['deb MiB']:.1f} MiB", file=sys.stderr)
