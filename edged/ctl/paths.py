"""Where the config, the daemon's socket and the journal are: option, config, or default."""

from __future__ import annotations

import argparse
import functools
import os
from datetime import tzinfo

from edged import localtime
from edged.config import DEFAULT_CONFIG_PATH, Config, load_config
from edged.ctl.errors import CtlError
from edged.errors import ConfigError


@functools.cache
def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CtlError(f"config error: {exc}") from None


def config_file(args: argparse.Namespace) -> str | None:
    """--config, else the default config file if it exists, else None."""
    if args.config:
        return str(args.config)
    return DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None


def config(args: argparse.Namespace) -> Config | None:
    """The loaded config (CtlError if it is invalid), or None when there is none."""
    path = config_file(args)
    return _load(path) if path else None


def zone(args: argparse.Namespace) -> tzinfo:
    """The store's zone for the times edgectl shows: the config's [terminal] timezone, else
    the system's (the daemon's default too)."""
    cfg = config(args)
    return localtime.zone(cfg.terminal.timezone if cfg else "")


def default_socket() -> str:
    """The contract's socket path when no config says otherwise (as edged's own default)."""
    return f"{os.environ.get('RUNTIME_DIRECTORY', '/run/edged').split(':')[0]}/edged.sock"


def default_journal() -> str:
    """The contract's journal path when no config says otherwise (as edged's own default)."""
    return f"{os.environ.get('STATE_DIRECTORY', '/var/lib/edged').split(':')[0]}/journal.db"


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else the config's [api] socket, else the contract's default."""
    if getattr(args, "socket", None):
        return str(args.socket)
    cfg = config(args)
    return cfg.api.socket if cfg else default_socket()


def journal_path(args: argparse.Namespace) -> str:
    """--journal, else the config's [journal] path, else the contract's default."""
    if getattr(args, "journal", None):
        return str(args.journal)
    cfg = config(args)
    return cfg.journal.path if cfg else default_journal()
