"""python-escpos's printer database: built once, whole, into a private folder, then reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = (  # a receipt layout is checked against python-escpos's printer database
    "import os; from edged.devices.printer.layout import ReceiptLayout; ReceiptLayout();"
    "print(os.environ.get('ESCPOS_CAPABILITIES_PICKLE_DIR', ''))"
)


def probe(tmp: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    env["TMPDIR"] = str(tmp)
    env.pop("CACHE_DIRECTORY", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_built_once_and_reused(tmp_path: Path) -> None:
    first = Path(probe(tmp_path))
    assert first.parent == tmp_path
    assert first.stat().st_mode & 0o077 == 0
    (pickle,) = first.glob("*.capabilities.pickle")
    assert pickle.stat().st_size > 1000
    built_at = pickle.stat().st_mtime_ns
    assert Path(probe(tmp_path)) == first
    assert pickle.stat().st_mtime_ns == built_at  # read, not rebuilt
    assert [p.name for p in first.iterdir()] == [pickle.name]  # no half-built folders left


def test_a_folder_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    shared = tmp_path / f"edged-escpos-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert probe(tmp_path) == ""  # python-escpos then uses a throwaway folder of its own
