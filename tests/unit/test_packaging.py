"""`pip install .` gives both commands and every subpackage: a wheel built from this tree."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_both_commands_and_every_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("edged-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "edged = edged.cli:main" in scripts
    assert "edgectl = edged.ctl:main" in scripts
    packages = {
        str(path.parent.relative_to(ROOT))
        for path in (ROOT / "edged").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    shipped = {name.rsplit("/", 1)[0] for name in names if name.endswith(".py")}
    assert packages <= shipped, f"missing from the wheel: {sorted(packages - shipped)}"
    assert not any(name.startswith("tests/") for name in names)


def test_the_sdist_has_the_units_hardware_files_and_examples(tmp_path: Path) -> None:
    """The README's manual install takes systemd/, hardware/ and examples/ from the source
    release; the wheel is the Python package only."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (sdist,) = tmp_path.glob("edged-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {
        str(path.relative_to(ROOT))
        for folder in ("systemd", "hardware", "examples")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
    }
    assert {"examples/edged.toml", "examples/collector.toml"} <= wanted
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"
