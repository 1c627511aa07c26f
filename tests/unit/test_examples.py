"""The example configs in examples/ load with the real config loaders, as the README says."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import load_collector_config, load_config
from edged.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_terminal_example_loads() -> None:
    cfg = load_config(EXAMPLES / "edged.toml")
    assert (cfg.terminal.store_id, cfg.terminal.terminal_id) == ("berlin-01", "till-3")
    assert cfg.uplink is not None
    assert cfg.uplink.password_file == "/etc/edged/broker.password"
    devices = cfg.devices
    assert devices.printer and devices.scanner and devices.payment


def test_the_collector_example_loads_with_an_absolute_db() -> None:
    """Its db is /var/lib/edged-collector/collector.db (four slashes). Where that folder does
    not exist (not a store server) the loader says so, and nothing else is wrong."""
    path = EXAMPLES / "collector.toml"
    if Path("/var/lib/edged-collector").is_dir():
        cfg = load_collector_config(path)
        assert cfg.collector.db == "sqlite:////var/lib/edged-collector/collector.db"
        return
    with pytest.raises(ConfigError) as info:
        load_collector_config(path)
    assert info.value.key == "collector.db"
    assert "resolves to /var/lib/edged-collector/collector.db" in info.value.problem
