"""`edgectl keys` and doctor's key check, on the files beside a journal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edged.ctl.cli import main
from edged.ctl.keys import key_check
from edged.keys import collector_pin_path, load_or_create, read_pin, terminal_key_path
from edged.signing import Signer


def test_pin_show_and_forget_the_collector_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = str(tmp_path / "journal.db")
    mine = load_or_create(terminal_key_path(journal)).public_hex
    collector = Signer.generate().public_hex
    assert main(["keys", "pin-collector", collector, "--journal", journal]) == 0
    assert read_pin(collector_pin_path(journal)) == collector
    capsys.readouterr()
    assert main(["keys", "show", "--json", "--journal", journal]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"terminal_key": mine, "collector_key": collector}
    assert main(["keys", "forget-collector", "--journal", journal]) == 0
    assert read_pin(collector_pin_path(journal)) is None
    assert main(["keys", "pin-collector", "not-hex", "--journal", journal]) == 2
    assert "64 hex digits" in capsys.readouterr().err


def test_doctor_fails_a_key_others_can_read(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.db")
    assert key_check(journal, None).level == "WARN"  # not made yet
    key = load_or_create(terminal_key_path(journal)).public_hex
    check = key_check(journal, None)
    assert (check.level, key in check.found) == ("OK", True)
    os.chmod(terminal_key_path(journal), 0o644)
    assert key_check(journal, None).level == "FAIL"
