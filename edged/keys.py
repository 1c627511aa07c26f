"""Key files: each side's own Ed25519 key, made at first start, and the peer key it pinned.

A private key lives beside the database it signs for (the terminal's beside its journal, the
collector's beside its database), 0600, written once and atomically (never half a key, never
overwritten). A terminal keeps the collector key it pinned in `collector.pub` (hex) there too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

from edged.errors import KeyFileError
from edged.signing import Signer, check_key_hex

log = structlog.get_logger(__name__)

TERMINAL_KEY_FILE = "terminal.key"
COLLECTOR_KEY_FILE = "collector.key"
COLLECTOR_PIN_FILE = "collector.pub"  # terminal side: the collector key it trusts
KEY_MODE = 0o600
PIN_MODE = 0o640


def terminal_key_path(journal_path: str | Path) -> Path:
    return Path(journal_path).parent / TERMINAL_KEY_FILE


def collector_pin_path(journal_path: str | Path) -> Path:
    return Path(journal_path).parent / COLLECTOR_PIN_FILE


def collector_key_path(db_path: str | Path) -> Path:
    return Path(db_path).parent / COLLECTOR_KEY_FILE


def load_or_create(path: Path) -> Signer:
    """The key at `path`; made (0600, atomically) if there is none yet."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc}; check its owner") from exc
    try:
        return Signer.from_pem(pem)
    except ValueError as exc:
        raise KeyFileError(
            f"signing key {path} is damaged ({exc}); move it away and start again to make a "
            "new one, then re-pin the new key at the other end (README: Keys)"
        ) from exc


def read_public(path: Path) -> str | None:
    """The public key (hex) of the key at `path`, or None if there is none or it is unreadable."""
    try:
        return Signer.from_pem(path.read_bytes()).public_hex
    except (OSError, ValueError):
        return None


def _create(path: Path) -> Signer:
    signer = Signer.generate()
    _write_new(path, signer.pem(), KEY_MODE, replace=False)
    log.info("signing_key_created", path=str(path), key=signer.public_hex)
    return signer


def read_pin(path: Path) -> str | None:
    """The pinned peer key (hex), None if none is pinned; KeyFileError if the file is bad."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read pinned key {path}: {exc}") from exc
    try:
        return check_key_hex(text)
    except ValueError as exc:
        raise KeyFileError(
            f"pinned key {path}: {exc}; pin the right one with `edgectl keys pin-collector KEY`"
        ) from exc


def write_pin(path: Path, key_hex: str) -> None:
    """Pin `key_hex` (replacing any earlier pin) atomically; owner as the folder's."""
    _write_new(path, (check_key_hex(key_hex) + "\n").encode(), PIN_MODE, replace=True)


def forget_pin(path: Path) -> bool:
    """Remove the pin; True if there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _write_new(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write `data` to a temporary file, fsync, then link (or replace) it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            folder = path.parent.stat()
            if os.geteuid() == 0:  # edgectl as root: the daemon's user must still read it
                os.fchown(fd, folder.st_uid, folder.st_gid)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite a key
    except FileExistsError as exc:
        raise KeyFileError(f"{path} appeared while it was being made; start again") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc}; check the folder's owner") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
