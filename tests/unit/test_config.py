"""Config errors name the file, the key and the problem; defaults follow the contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import load_collector_config, load_config, tls_context
from edged.errors import ConfigError

GOOD = '[terminal]\nstore_id = "berlin-01"\nterminal_id = "till_3"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edged.toml"
    path.write_text(text)
    return path


def test_minimal_config_uses_contract_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edged")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/edged")
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.terminal.store_id == "berlin-01"
    assert cfg.journal.path == "/var/lib/edged/journal.db"
    assert cfg.api.socket == "/run/edged/edged.sock"
    assert cfg.uplink is None  # a journal-only terminal


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, GOOD + '[journal]\npath = "data/j.db"\n[api]\nsocket = "e.sock"\n')
    )
    assert cfg.journal.path == str(tmp_path / "data/j.db")
    assert cfg.api.socket == str(tmp_path / "e.sock")


def test_device_sections(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert (cfg.devices.printer, cfg.devices.scanner, cfg.devices.payment) == (None, None, None)
    text = (
        GOOD
        + '[devices.printer]\nprofile = "TM-T88V"\nrender_dir = "receipts"\n'
        + '[devices.scanner]\ndriver = "evdev"\npath = "/dev/input/by-id/x-event-kbd"\n'
        + '[devices.payment]\nconnection = "tcp"\nhost = "127.0.0.1"\n'
    )
    cfg = load_config(write(tmp_path, text))
    printer, scanner, payment = cfg.devices.printer, cfg.devices.scanner, cfg.devices.payment
    assert printer is not None and scanner is not None and payment is not None
    assert (printer.driver, printer.connection, printer.path) == (
        "escpos",
        "serial",
        "/dev/edged/printer",
    )
    assert printer.render_dir == str(tmp_path / "receipts")
    assert (scanner.layout, scanner.suffix, scanner.double_read_s) == ("us", "\r", 0.5)
    assert (payment.driver, payment.port, payment.currency) == ("zvt", 20007, "EUR")


def test_uplink_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD + '[uplink]\nhost = "broker.store"\n'))
    assert cfg.uplink is not None
    assert (cfg.uplink.effective_port, cfg.uplink.keepalive_s) == (1883, 5)
    assert cfg.uplink.topic_prefix == "edged/v1"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[terminal]\nstore_id = "s"\n', "terminal.terminal_id", "missing required key"),
        (GOOD + "colour = 1\n", "terminal.colour", "unknown key"),
        (GOOD + "[journal]\nsize = 1\n", "journal.size", "unknown key"),
        (GOOD + "[printer]\n", "printer", "unknown key"),
        (GOOD + '[devices.printer]\ndriver = "epson"\n', "devices.printer.driver", "'sim'"),
        (GOOD + "[devices.printer]\ndrawer_pin = 3\n", "devices.printer.drawer_pin", "2"),
        (
            GOOD + '[devices.printer]\nconnection = "network"\n',
            "devices.printer.host",
            "connection = network",
        ),
        (
            GOOD + '[devices.printer]\nconnection = "usb"\n',
            "devices.printer.usb_vendor_id",
            "lsusb",
        ),
        (GOOD + "[devices.scanner]\nbaudrate = 9601\n", "devices.scanner.baudrate", "9600"),
        (GOOD + '[devices.scanner]\nlayout = "fr"\n', "devices.scanner.layout", "'de'"),
        (GOOD + '[devices.payment]\npassword = "12"\n', "devices.payment.password", "6 digits"),
        (GOOD + '[devices.payment]\ncurrency = "eur"\n', "devices.payment.currency", "ISO 4217"),
        (GOOD + '[devices.payment]\nconnection = "tcp"\n', "devices.payment.host", "tcp"),
        (
            GOOD + '[devices.payment]\ndriver = "concert"\nconnection = "tcp"\n',
            "devices.payment.connection",
            "serial",
        ),
        (GOOD + "[devices.drawer]\n", "devices.drawer", "unknown key"),
        ('[terminal]\nstore_id = 5\nterminal_id = "t"\n', "terminal.store_id", "expected str"),
        ('[terminal]\nstore_id = "a b"\nterminal_id = "t"\n', "terminal.store_id", "1 to 32"),
        (
            '[terminal]\nstore_id = "' + "x" * 33 + '"\nterminal_id = "t"\n',
            "terminal.store_id",
            "1 to 32",
        ),
        (GOOD + '[uplink]\nhost = "h"\nport = "1883"\n', "uplink.port", "expected int"),
        (GOOD + '[uplink]\nhost = "h"\nport = 70000\n', "uplink.port", "<= 65535"),
        (GOOD + '[uplink]\nhost = "h"\nwindow = 0\n', "uplink.window", ">= 1"),
        (GOOD + "[uplink]\nport = 1\n", "uplink.host", "missing required key"),
        (GOOD + '[uplink]\nhost = "h"\nca_file = "ca.pem"\n', "uplink.tls", "tls is false"),
        (GOOD + '[uplink]\nhost = "h"\ntopic_prefix = "a/#"\n', "uplink.topic_prefix", "wildcards"),
        (
            GOOD.replace("{", "") + 'receipt_format = "{nope}"\n',
            "terminal.receipt_format",
            "bad format",
        ),
        ("terminal = 3\n", "terminal", "expected object"),
    ],
)
def test_errors_name_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[terminal\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_collector_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[uplink]\nhost = "h"\n[collector]\ndb = "sqlite:///c.db"\n')
    cfg = load_collector_config(path)
    assert cfg.collector.db == f"sqlite:///{tmp_path / 'c.db'}"


@pytest.mark.parametrize(
    ("line", "group"),
    [
        ("", "collectors"),  # shared by default, as the contract says
        ('shared_group = "east"', "east"),
        ('shared_group = ""', None),
        ("shared_group = false", None),
    ],
)
def test_collector_shares_its_subscription_unless_told_not_to(
    tmp_path: Path, line: str, group: str | None
) -> None:
    path = write(tmp_path, f'[uplink]\nhost = "h"\n[collector]\ndb = "sqlite:///c.db"\n{line}\n')
    assert load_collector_config(path).collector.group == group


@pytest.mark.parametrize(
    ("value", "problem"),
    [("true", "true names no group"), ('"a/b"', "must be up to 32 characters")],
)
def test_collector_shared_group_errors_say_what_to_write(
    tmp_path: Path, value: str, problem: str
) -> None:
    text = f'[uplink]\nhost = "h"\n[collector]\ndb = "sqlite:///c.db"\nshared_group = {value}\n'
    with pytest.raises(ConfigError, match=f"collector.shared_group: {problem}"):
        load_collector_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("collector", "key", "problem"),
    [
        ('db = "mysql://x"', "collector.db", "unsupported URL"),
        ('db = "postgresql://edged:secret@db/edged"', "collector.db", "holds a password"),
        ('db = "postgresql://edged@db/edged?password=x"', "collector.db", "holds a password"),
        ('db = "postgresql://edged@db/edged"', "collector.state_dir", "needs a directory"),
    ],
)
def test_collector_db_url_problems_name_the_key(
    tmp_path: Path, collector: str, key: str, problem: str
) -> None:
    path = write(tmp_path, f'[uplink]\nhost = "h"\n[collector]\n{collector}\n')
    with pytest.raises(ConfigError, match=f"{key}: .*{problem}"):
        load_collector_config(path)


def test_collector_on_postgres_resolves_its_state_dir(tmp_path: Path) -> None:
    url = "postgresql://edged@db.example:5433/edged?passfile=/etc/edged/pgpass"
    body = f'[uplink]\nhost = "h"\n[collector]\ndb = "{url}"\nstate_dir = "state"\n'
    cfg = load_collector_config(write(tmp_path, body))
    assert cfg.collector.db == url
    assert cfg.collector.state_dir == str(tmp_path / "state")


def test_tls_files_that_cannot_be_loaded_name_their_key(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, GOOD + '[uplink]\nhost = "h"\ntls = true\nca_file = "missing-ca.pem"\n')
    )
    assert cfg.uplink is not None
    with pytest.raises(ConfigError) as info:
        tls_context(cfg.uplink, cfg.source)
    assert info.value.key == "uplink.ca_file"
    assert "missing-ca.pem" in info.value.problem


def test_no_tls_no_context(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD + '[uplink]\nhost = "h"\n'))
    assert cfg.uplink is not None
    assert tls_context(cfg.uplink, cfg.source) is None


def test_api_limits_default_and_are_checked(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert (cfg.api.max_clients, cfg.api.max_buffered_bytes) == (64, 16 * 1024 * 1024)
    cfg = load_config(write(tmp_path, GOOD + "[api]\nmax_clients = 8\n"))
    assert cfg.api.max_clients == 8
    with pytest.raises(ConfigError, match=r"api\.max_clients"):
        load_config(write(tmp_path, GOOD + "[api]\nmax_clients = 0\n"))
    with pytest.raises(ConfigError, match=r"api\.max_buffered_bytes"):
        load_config(write(tmp_path, GOOD + "[api]\nmax_buffered_bytes = 1000\n"))
