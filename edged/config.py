"""TOML configuration -> typed settings; every error names the file, the key and the problem."""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from edged.errors import ConfigError
from edged.wire import DEFAULT_TOPIC_PREFIX

DEFAULT_CONFIG_PATH = "/etc/edged/edged.toml"
IDENT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
Ident = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class TerminalSection(_Section, frozen=True):
    store_id: Ident
    terminal_id: Ident
    # Python format string; fields: store, terminal, seq.
    receipt_format: str = "{store}-{terminal}-{seq:06d}"


class JournalSection(_Section, frozen=True):
    path: str = ""
    retain_days: Annotated[float, msgspec.Meta(ge=0)] = 90.0


class ApiSection(_Section, frozen=True):
    socket: str = ""


class UplinkSection(_Section, frozen=True):
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    client_id: str | None = None
    keepalive_s: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    window: Annotated[int, msgspec.Meta(ge=1, le=500)] = 8
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 200
    ack_timeout_s: Positive = 10.0
    online_after_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 5.0

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class CollectorSection(_Section, frozen=True):
    db: str
    # MQTT v5 shared subscription group; several collectors with the same group share the load.
    shared_group: Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)] | None = None


class Config(_Section, frozen=True):
    """The terminal daemon's settings (`edged run`)."""

    terminal: TerminalSection
    journal: JournalSection = JournalSection()
    api: ApiSection = ApiSection()
    uplink: UplinkSection | None = None
    source: str = ""


class CollectorConfig(_Section, frozen=True):
    """The store collector's settings (`edged collector`)."""

    uplink: UplinkSection
    collector: CollectorSection
    source: str = ""


C = TypeVar("C", Config, CollectorConfig)

_PATTERNS = (
    (re.compile(r"Object missing required field `(\w+)`"), "missing required key", True),
    (re.compile(r"Object contains unknown field `([^`]+)`"), "unknown key", True),
)
_FRIENDLY = {
    IDENT_PATTERN: "must be 1 to 32 characters of A-Z, a-z, 0-9, '_' or '-'",
}


def _translate(file: str, exc: msgspec.ValidationError) -> ConfigError:
    message, _, at = str(exc).rpartition(" - at `$")
    if not message:
        message, at = str(exc), ""
    key = at.rstrip("`").lstrip(".")
    for pattern, problem, appends in _PATTERNS:
        if m := pattern.match(message):
            if appends:
                key = f"{key}.{m.group(1)}" if key else m.group(1)
            return ConfigError(file, key, problem)
    for fragment, friendly in _FRIENDLY.items():
        if fragment in message:
            return ConfigError(file, key, friendly)
    problem = message.replace("`", "")
    problem = problem[0].lower() + problem[1:] if problem else "invalid value"
    return ConfigError(file, key, problem)


def _resolve(base: Path, value: str | None) -> str | None:
    if not value:
        return value
    path = Path(value)
    return str(path if path.is_absolute() else (base / path))


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file; pass --config FILE") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 at byte {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None


def _convert(path: Path, raw: dict[str, Any], kind: type[C]) -> C:
    try:
        return msgspec.convert(raw, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _translate(str(path), exc) from None


def _resolve_uplink(base: Path, up: UplinkSection | None, file: str) -> UplinkSection | None:
    if up is None:
        return None
    up = msgspec.structs.replace(
        up,
        ca_file=_resolve(base, up.ca_file),
        cert_file=_resolve(base, up.cert_file),
        key_file=_resolve(base, up.key_file),
        password_file=_resolve(base, up.password_file),
    )
    if up.key_file and not up.cert_file:
        raise ConfigError(file, "uplink.key_file", "set cert_file too, or remove key_file")
    if (up.cert_file or up.ca_file) and not up.tls:
        raise ConfigError(file, "uplink.tls", "ca_file/cert_file are set but tls is false")
    if up.reconnect_max_s < up.reconnect_min_s:
        raise ConfigError(file, "uplink.reconnect_max_s", "must be >= reconnect_min_s")
    if "#" in up.topic_prefix or "+" in up.topic_prefix or not up.topic_prefix.strip("/"):
        raise ConfigError(file, "uplink.topic_prefix", "must be a topic path without wildcards")
    return up


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and check the terminal daemon's config."""
    file = Path(path)
    raw = _load_toml(file)
    raw.pop("source", None)
    if "devices" in raw:
        raise ConfigError(
            str(file),
            "devices",
            "device drivers (printer, scanner, payment) are not in this release; "
            "remove the [devices.*] sections",
        )
    cfg = _convert(file, raw, Config)
    base = file.resolve().parent
    try:
        cfg.terminal.receipt_format.format(store="s", terminal="t", seq=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            str(file),
            "terminal.receipt_format",
            f"bad format ({exc}); the fields are store, terminal and seq",
        ) from None
    state_dir = os.environ.get("STATE_DIRECTORY", "/var/lib/edged").split(":")[0]
    runtime_dir = os.environ.get("RUNTIME_DIRECTORY", "/run/edged").split(":")[0]
    journal = msgspec.structs.replace(
        cfg.journal, path=_resolve(base, cfg.journal.path) or f"{state_dir}/journal.db"
    )
    api = msgspec.structs.replace(
        cfg.api, socket=_resolve(base, cfg.api.socket) or f"{runtime_dir}/edged.sock"
    )
    uplink = _resolve_uplink(base, cfg.uplink, str(file))
    return msgspec.structs.replace(cfg, journal=journal, api=api, uplink=uplink, source=str(file))


def load_collector_config(path: str | os.PathLike[str]) -> CollectorConfig:
    """Load and check the store collector's config."""
    file = Path(path)
    raw = _load_toml(file)
    raw.pop("source", None)
    cfg = _convert(file, raw, CollectorConfig)
    base = file.resolve().parent
    uplink = _resolve_uplink(base, cfg.uplink, str(file))
    assert uplink is not None
    db = cfg.collector.db
    if not db.startswith("sqlite:///"):
        raise ConfigError(str(file), "collector.db", f"unsupported URL {db!r}; use sqlite:///PATH")
    db_path = _resolve(base, db.removeprefix("sqlite:///"))
    collector = msgspec.structs.replace(cfg.collector, db=f"sqlite:///{db_path}")
    return msgspec.structs.replace(cfg, uplink=uplink, collector=collector, source=str(file))


def read_password(uplink: UplinkSection, file: str) -> str | None:
    """The broker password from `password_file` (first line), if configured."""
    if not uplink.password_file:
        return None
    try:
        return Path(uplink.password_file).read_text("utf-8").splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ConfigError(
            file, "uplink.password_file", f"cannot read {uplink.password_file}: {exc}"
        ) from None


def tls_context(uplink: UplinkSection, file: str) -> ssl.SSLContext | None:
    """The TLS context for `uplink` (None without TLS), loaded now so rotated files are used."""
    if not uplink.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=uplink.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(file, "uplink.ca_file", f"cannot load {uplink.ca_file}: {exc}") from exc
    if uplink.cert_file:
        try:
            context.load_cert_chain(uplink.cert_file, uplink.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                file, "uplink.cert_file", f"cannot load {uplink.cert_file}: {exc}"
            ) from exc
    return context
