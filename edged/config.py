"""TOML configuration -> typed settings; every error names the file, the key and the problem."""

from __future__ import annotations

import os
import re
import ssl
import tomllib
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import msgspec

from edged.errors import ConfigError
from edged.refwire import REFDATA_LEVEL
from edged.wire import DEFAULT_TOPIC_PREFIX

DEFAULT_CONFIG_PATH = "/etc/edged/edged.toml"
IDENT_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
IDENT_OR_EMPTY_PATTERN = r"^[A-Za-z0-9_-]{0,32}$"
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
    # IANA zone of the times printed on receipts and shown by edgectl; "" is the system's.
    timezone: str = ""


class JournalSection(_Section, frozen=True):
    path: str = ""
    retain_days: Annotated[float, msgspec.Meta(ge=0)] = 90.0
    # Sale ids outlive their entries, so a late retry is still answered as a duplicate
    # (the same default as edged.journal.store.ID_RETAIN_DAYS; config must not import it).
    id_retain_days: Annotated[float, msgspec.Meta(ge=0)] = 400.0
    # A new journal with an uplink takes over the store's seqs for its terminal id (a replaced
    # till) before it sends anything: edged.journal.adoption.
    adopt: bool = True


class ApiSection(_Section, frozen=True):
    socket: str = ""
    # Connections served at once; more are refused with -32005 (edged.api.limits defaults).
    max_clients: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    # Bytes of unfinished lines held for all clients together (at least one 1 MiB line).
    max_buffered_bytes: Annotated[int, msgspec.Meta(ge=1024 * 1024)] = 16 * 1024 * 1024


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
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 1000
    ack_timeout_s: Positive = 10.0
    online_after_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 5.0
    require_signed_acks: bool = True  # terminal: act on no unsigned ack, even before a pin
    # The oldest unsent sale this old turns the outbox severity `warn`, then `alarm`
    # (edged.backlog's defaults; config must not import it).
    outbox_warn_after_s: Positive = 900.0
    outbox_alarm_after_s: Positive = 14400.0

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Baud = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
Parity = Literal["none", "even", "odd"]


class SerialSettings(_Section, frozen=True):
    """Line settings of a serial device; None takes the driver's documented default."""

    path: str
    baudrate: Baud | None = None
    bytesize: Literal[7, 8] | None = None
    parity: Parity | None = None
    stopbits: Literal[1, 2] | None = None


class PrinterSection(SerialSettings, frozen=True):
    driver: Literal["escpos", "sim"] = "escpos"
    connection: Literal["serial", "network", "file", "usb"] = "serial"
    path: str = "/dev/edged/printer"
    host: str | None = None
    port: Port = 9100
    usb_vendor_id: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)] | None = None
    usb_product_id: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)] | None = None
    profile: str = "default"
    columns: Annotated[int, msgspec.Meta(ge=16, le=80)] | None = None
    codepage: str = "CP858"
    status: Literal["poll", "asb", "none"] = "poll"
    poll_s: Positive = 2.0
    confirm_timeout_s: Positive = 20.0
    header: list[str] = []
    footer: list[str] = []
    code: Literal["qr", "barcode", "none"] = "qr"
    print_hash: bool = True
    drawer_pin: Literal[2, 5] = 2
    drawer_pulse_ms: Annotated[int, msgspec.Meta(ge=2, le=510)] = 100
    drawer_sensor: bool = False
    render_dir: str | None = None  # sim: each receipt as NNNN.txt and NNNN.png


class ScannerSection(SerialSettings, frozen=True):
    driver: Literal["serial", "evdev", "sim"] = "serial"
    path: str = "/dev/edged/scanner"
    prefix: str = ""
    suffix: str = "\r"
    layout: Literal["us", "de"] = "us"
    grab: bool = True
    double_read_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5


class PaymentSection(SerialSettings, frozen=True):
    driver: Literal["zvt", "concert", "sim"] = "zvt"
    connection: Literal["serial", "tcp"] = "serial"
    path: str = "/dev/edged/payment"
    host: str | None = None
    port: Port = 20007
    password: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")] = "000000"  # noqa: S105 (ZVT's factory default)
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] = "EUR"
    pos_number: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{2}$")] = "01"
    simulate: Literal["zvt", "concert"] = "zvt"  # with driver = "sim": the terminal to simulate


class DevicesSection(_Section, frozen=True):
    printer: PrinterSection | None = None
    scanner: ScannerSection | None = None
    payment: PaymentSection | None = None


# Operation kinds and whether they need the store link: "online" ones are refused at once
# while the link is not online (edged.operations); a UI-named kind is just another key.
OperationPolicy = Literal["online", "any"]
DEFAULT_OPERATIONS: dict[str, OperationPolicy] = {
    "loyalty": "online",
    "voucher": "online",
    "gift_card": "online",
    "return_with_receipt_lookup": "online",
}


class RefdataSection(_Section, frozen=True):
    path: str = ""  # default: refdata.db beside the journal
    keep: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    chunk_wait_s: Positive = 60.0  # a manifest's chunks must all come within this


DEFAULT_SHARED_GROUP = "collectors"


class CollectorSection(_Section, frozen=True):
    db: str  # sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE (db_url_problem)
    # Where a PostgreSQL collector keeps its key and its database's identity (SQLite: beside it).
    state_dir: str = ""
    # MQTT v5 shared subscription group: collectors with the same group share the load. On by
    # default (used where the broker offers shared subscriptions); "" or false turns it off.
    shared_group: Annotated[str, msgspec.Meta(pattern=IDENT_OR_EMPTY_PATTERN)] | bool = (
        DEFAULT_SHARED_GROUP
    )
    # A terminal with no pinned key: its first batch pins it (true), or it is refused until
    # an admin pins its key (false: nobody wins a pin by speaking first).
    trust_on_first_use: bool = True

    @property
    def group(self) -> str | None:
        """The shared subscription group, None when turned off."""
        return (
            self.shared_group if isinstance(self.shared_group, str) and self.shared_group else None
        )


class Config(_Section, frozen=True):
    """The terminal daemon's settings (`edged run`)."""

    terminal: TerminalSection
    journal: JournalSection = JournalSection()
    api: ApiSection = ApiSection()
    uplink: UplinkSection | None = None
    devices: DevicesSection = DevicesSection()
    # kind -> policy; load_config merges it over DEFAULT_OPERATIONS
    operations: dict[str, Any] = {}  # checked by _check_operations, for errors naming the key
    refdata: RefdataSection = RefdataSection()
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
    IDENT_OR_EMPTY_PATTERN: "must be up to 32 characters of A-Z, a-z, 0-9, '_' or '-'",
    "^[0-9]{6}$": "must be 6 digits (the terminal's registration password)",
    "^[A-Z]{3}$": "must be an ISO 4217 code of three capitals, e.g. EUR",
    "^[0-9]{2}$": "must be 2 digits, e.g. 01",
}


def _choices(kind: type, key: str) -> list[Any]:
    """The allowed values of the Literal at `key` (e.g. "devices.printer.driver"), if it is one."""
    node: Any = kind
    for part in key.split("."):
        hints = typing.get_type_hints(node, include_extras=True) if isinstance(node, type) else {}
        if part not in hints:
            return []
        node = hints[part]
        for arg in (node, *typing.get_args(node)):  # X | None, Annotated[X, ...]
            if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
                node = arg
    for arg in (node, *typing.get_args(node)):
        if typing.get_origin(arg) is Literal:
            return list(typing.get_args(arg))
    return []


def _translate(file: str, exc: msgspec.ValidationError, kind: type) -> ConfigError:
    message, _, at = str(exc).rpartition(" - at `$")
    if not message:
        message, at = str(exc), ""
    key = at.rstrip("`").lstrip(".")
    for pattern, problem, appends in _PATTERNS:
        if m := pattern.match(message):
            if appends:
                key = f"{key}.{m.group(1)}" if key else m.group(1)
            return ConfigError(file, key, problem)
    if choices := _choices(kind, key):
        allowed = ", ".join(repr(c) for c in choices)
        problem = message.replace("`", "")
        return ConfigError(file, key, f"{problem[0].lower()}{problem[1:]}; use one of: {allowed}")
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
        raise _translate(str(path), exc, kind) from None


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
    if up.outbox_alarm_after_s < up.outbox_warn_after_s:
        raise ConfigError(
            file,
            "uplink.outbox_alarm_after_s",
            f"must be >= outbox_warn_after_s ({up.outbox_warn_after_s:g}): the alarm comes "
            "after the warning",
        )
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
    _check_timezone(cfg.terminal.timezone, str(file))
    if cfg.journal.id_retain_days < cfg.journal.retain_days:
        raise ConfigError(
            str(file),
            "journal.id_retain_days",
            f"must be >= retain_days ({cfg.journal.retain_days:g}): a sale id must be "
            "remembered at least as long as its sale; raise id_retain_days",
        )
    state_dir = os.environ.get("STATE_DIRECTORY", "/var/lib/edged").split(":")[0]
    runtime_dir = os.environ.get("RUNTIME_DIRECTORY", "/run/edged").split(":")[0]
    journal = msgspec.structs.replace(
        cfg.journal, path=_resolve(base, cfg.journal.path) or f"{state_dir}/journal.db"
    )
    api = msgspec.structs.replace(
        cfg.api, socket=_resolve(base, cfg.api.socket) or f"{runtime_dir}/edged.sock"
    )
    uplink = _resolve_uplink(base, cfg.uplink, str(file))
    devices = _check_devices(base, cfg.devices, str(file))
    refdata = _check_refdata(base, cfg, journal.path, str(file))
    return msgspec.structs.replace(
        cfg,
        journal=journal,
        api=api,
        uplink=uplink,
        devices=devices,
        operations=_check_operations(cfg.operations, str(file)),
        refdata=refdata,
        source=str(file),
    )


def _check_timezone(name: str, file: str) -> None:
    if not name:
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            file,
            "terminal.timezone",
            f'unknown time zone {name[:60]!r}: use an IANA name such as "Europe/Berlin" '
            "(`timedatectl list-timezones`), or leave it out for the system's zone; if no "
            "zone is known at all, install the time zone data (Debian: apt install tzdata)",
        ) from None


def _check_operations(table: dict[str, Any], file: str) -> dict[str, Any]:
    """`[operations]` over DEFAULT_OPERATIONS; each key an operation kind, each value a policy."""
    for kind, policy in table.items():
        if not re.fullmatch(IDENT_PATTERN, kind):
            raise ConfigError(
                file,
                f"operations.{kind[:40]}",
                "an operation kind must be 1 to 32 characters of A-Z, a-z, 0-9, '_' or '-'",
            )
        if policy not in typing.get_args(OperationPolicy):
            raise ConfigError(
                file,
                f"operations.{kind}",
                f'must be "online" (refused while the store link is not online) or "any", '
                f"got {policy!r}",
            )
    return {**DEFAULT_OPERATIONS, **table}


def _check_refdata(base: Path, cfg: Config, journal_path: str, file: str) -> RefdataSection:
    if cfg.terminal.terminal_id == REFDATA_LEVEL:
        raise ConfigError(
            file,
            "terminal.terminal_id",
            f"{REFDATA_LEVEL!r} is reserved: the store's reference data topics are "
            f"{{prefix}}/{{store}}/{REFDATA_LEVEL}/...; choose another terminal id",
        )
    path = _resolve(base, cfg.refdata.path) or str(Path(journal_path).with_name("refdata.db"))
    if Path(path) == Path(journal_path):
        raise ConfigError(file, "refdata.path", "must not be the journal's file")
    return msgspec.structs.replace(cfg.refdata, path=path)


def _check_devices(base: Path, devices: DevicesSection, file: str) -> DevicesSection:
    printer, payment = devices.printer, devices.payment
    if printer is not None:
        if printer.driver == "escpos" and printer.connection == "network" and not printer.host:
            raise ConfigError(file, "devices.printer.host", "required with connection = network")
        if (
            printer.driver == "escpos"
            and printer.connection == "usb"
            and not (printer.usb_vendor_id and printer.usb_product_id)
        ):
            raise ConfigError(
                file,
                "devices.printer.usb_vendor_id",
                "usb_vendor_id and usb_product_id are required with connection = usb "
                "(see `lsusb`, e.g. 0x04b8 and 0x0202 for an Epson TM-T88)",
            )
        printer = msgspec.structs.replace(printer, render_dir=_resolve(base, printer.render_dir))
    if payment is not None and payment.driver != "sim" and payment.connection == "tcp":
        if payment.driver == "concert":
            raise ConfigError(
                file, "devices.payment.connection", "Concert E+ runs over serial/USB only"
            )
        if not payment.host:
            raise ConfigError(file, "devices.payment.host", "required with connection = tcp")
    return msgspec.structs.replace(devices, printer=printer, payment=payment)


def load_collector_config(path: str | os.PathLike[str]) -> CollectorConfig:
    """Load and check the store collector's config."""
    file = Path(path)
    raw = _load_toml(file)
    raw.pop("source", None)
    cfg = _convert(file, raw, CollectorConfig)
    base = file.resolve().parent
    uplink = _resolve_uplink(base, cfg.uplink, str(file))
    assert uplink is not None
    if cfg.collector.shared_group is True:
        raise ConfigError(
            str(file),
            "collector.shared_group",
            f'true names no group; name one (the default is "{DEFAULT_SHARED_GROUP}") '
            'or write false or "" to turn shared subscriptions off',
        )
    db, state_dir = cfg.collector.db, cfg.collector.state_dir
    problem = db_url_problem(db)
    if problem is not None:
        raise ConfigError(str(file), "collector.db", problem)
    if db.startswith(SQLITE_URL_PREFIX):
        db_path = _resolve(base, db.removeprefix(SQLITE_URL_PREFIX)) or ""
        _check_db_folder(db, db_path, str(file))
        db = SQLITE_URL_PREFIX + db_path
    elif not state_dir:
        raise ConfigError(
            str(file),
            "collector.state_dir",
            "a PostgreSQL collector needs a directory for its key and its database's identity "
            "(e.g. /var/lib/edged-collector)",
        )
    state_dir = _resolve(base, state_dir) or ""
    collector = msgspec.structs.replace(cfg.collector, db=db, state_dir=state_dir)
    return msgspec.structs.replace(cfg, uplink=uplink, collector=collector, source=str(file))


SQLITE_URL_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
DB_URL_FORMS = "sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def db_url_problem(url: str) -> str | None:
    """Why `url` cannot be the collector's `db`, or None. No password in it: config files are
    read by many; libpq takes it from its password file or PGPASSWORD."""
    if url.startswith(SQLITE_URL_PREFIX):
        return None if url != SQLITE_URL_PREFIX else f"{url!r} has no path; use {DB_URL_FORMS}"
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        return f"unsupported URL {url!r}; use {DB_URL_FORMS}"
    if parts.password is not None or "password" in parse_qs(parts.query):
        return (
            "the URL holds a password; put it in a libpq password file (~/.pgpass of the "
            "collector's user, or passfile=FILE in the URL; mode 0600) or in PGPASSWORD"
        )
    return None


def _check_db_folder(url: str, db_path: str, file: str) -> None:
    """The database's folder must exist: a restart cannot create it (exit 78, not 1)."""
    folder = Path(db_path).parent
    if not db_path or folder.is_dir():
        return
    if url.removeprefix("sqlite:///").startswith("/"):
        why = "create it (edged-collector.service's StateDirectory= makes /var/lib/edged-collector)"
    else:
        why = (
            "the path is relative to the config file's folder; for an absolute path write four "
            "slashes: 'sqlite:////var/lib/edged-collector/collector.db'"
        )
    why = f"{url!r} resolves to {db_path}, whose folder {folder} does not exist: {why}"
    raise ConfigError(file, "collector.db", why)


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


def strict_tls_hint(verify_message: str) -> str | None:
    """What to do when strict verification refused a CA without keyUsage (None: not that)."""
    # OpenSSL: "CA cert does not include key usage extension"
    if "does not include key usage extension" in verify_message.lower():
        return (
            "the CA certificate lacks the keyUsage extension (keyCertSign, cRLSign) that strict "
            "verification requires (Python 3.13 and edged on every version): make the store CA "
            "as in the README's TLS recipe and reissue the broker's certificate"
        )
    return None


def tls_context(uplink: UplinkSection, file: str) -> ssl.SSLContext | None:
    """The TLS context for `uplink` (None without TLS), loaded now so rotated files are used."""
    if not uplink.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=uplink.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(file, "uplink.ca_file", f"cannot load {uplink.ca_file}: {exc}") from exc
    # 3.13 verifies strictly by default; so does edged on 3.11 and 3.12, so a store CA that
    # works on one till works on all of them (and keeps working when a till's Python moves on).
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if uplink.cert_file:
        try:
            context.load_cert_chain(uplink.cert_file, uplink.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                file, "uplink.cert_file", f"cannot load {uplink.cert_file}: {exc}"
            ) from exc
    return context
