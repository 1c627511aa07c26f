"""The layering of DESIGN.md holds: `lint-imports` keeps every contract in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Check `tree`'s `edged` package against the contracts in `tree`'s pyproject.toml."""
    limit = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *limit],
        cwd=tree,  # lint-imports reads ./pyproject.toml and imports edged from here first
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_layering_of_design_holds() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract", "reported"),
    [
        ("devices/manager.py", "import edged.sim.scanner", "devices", "edged.sim.scanner"),
        ("devices/scanner/driver.py", "import edged.sim", "simulators", "edged.sim"),
        ("journal/store.py", "import aiomqtt", "journal", "aiomqtt"),
        ("journal/readonly.py", "import edged.devices.state", "journal", "edged.devices"),
        ("devices/scanner/framing.py", "import asyncio", "device-codecs", "asyncio"),
        ("devices/payment/zvt/apdu.py", "import edged.config", "device-codecs", "edged.config"),
        ("wire.py", "import edged.errors", "pure-codecs", "edged.errors"),
        ("api/jsonrpc.py", "import edged.api.server", "pure-codecs", "edged.api.server"),
        ("api/methods.py", "import edged.journal", "api", "edged.journal"),
        ("uplink/service.py", "import edged.devices.state", "uplink-collector", "edged.devices"),
        (
            "uplink/forwarder.py",
            "import edged.collector.store",
            "terminal-store",
            "edged.collector.store",
        ),
        ("api/server.py", "import edged.simwiring", "wiring-devices", "edged.simwiring"),
        ("devices/printer/driver.py", "import serial", "serial-boundary", "serial"),
        ("uplink/link.py", "import aiomqtt", "mqtt-boundary", "aiomqtt"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, statement: str, contract: str, reported: str
) -> None:
    shutil.copytree(ROOT / "edged", tmp_path / "edged", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "edged" / module
    target.write_text(target.read_text() + f"\n{statement}\n")
    result = lint_imports(tmp_path, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    where = "edged." + module.removesuffix(".py").replace("/", ".")
    assert f"{where} -> {reported}" in result.stdout, result.stdout
