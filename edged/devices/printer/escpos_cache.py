"""One reused, atomically written cache of python-escpos's printer database.

python-escpos 3.1 parses its capabilities YAML (about 0.4 s) and pickles it into a NEW temp
folder on every import unless ESCPOS_CAPABILITIES_PICKLE_DIR names one; and when several
processes share a folder, one may read the pickle while another is still writing it. So the
pickle is built in a private temp folder and moved into place whole, once per python-escpos
version; every later process just reads it.
"""

from __future__ import annotations

import importlib.resources
import os
import platform
import shutil
import stat
import tempfile
from pathlib import Path

PICKLE_DIR = "ESCPOS_CAPABILITIES_PICKLE_DIR"


def _private_folder() -> Path | None:
    base = os.environ.get("CACHE_DIRECTORY", "").split(":")[0] or os.path.join(
        tempfile.gettempdir(), f"edged-escpos-{os.getuid()}"
    )
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError:
        return None
    # A pickle is code: never load one from a folder someone else could have written.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return Path(base)


def use_shared_cache() -> None:
    """Point python-escpos at the shared cache, building it first if missing or stale."""
    if PICKLE_DIR in os.environ:
        return
    folder = _private_folder()
    if folder is None:
        return  # python-escpos falls back to its own temp folder: slower, still correct
    target = folder / f"{platform.python_version()}.capabilities.pickle"
    source = importlib.resources.files("escpos") / "capabilities.json"
    with importlib.resources.as_file(source) as json_path:
        fresh = target.exists() and target.stat().st_mtime >= json_path.stat().st_mtime
    if not fresh:
        building = Path(tempfile.mkdtemp(dir=folder))
        try:
            os.environ[PICKLE_DIR] = str(building)
            import escpos.capabilities  # noqa: F401  (writes building/<pickle>)

            os.replace(building / target.name, target)
        except OSError:
            return  # keep what this process loaded; the next one tries again
        finally:
            shutil.rmtree(building, ignore_errors=True)
    os.environ[PICKLE_DIR] = str(folder)
