"""`edged collector keys list|pin|forget`: the store admin's view of pinned terminal keys."""

from __future__ import annotations

from typing import Any

from edged.clock import utc_now_iso
from edged.collector.dburl import DbTarget, as_target
from edged.collector.schema import CollectorStoreError
from edged.collector.store import CollectorStore
from edged.keys import collector_key_path, read_public

USAGE = "keys list | keys pin STORE TERMINAL KEY | keys forget STORE TERMINAL"


def keys_command(db: str | DbTarget, words: list[str]) -> dict[str, Any]:
    """Run one keys action on the collector database; ValueError with the usage if malformed."""
    target = as_target(db)
    action, args = (words[0], words[1:]) if words else ("list", [])
    arity = {"list": 0, "pin": 3, "forget": 2}
    if arity.get(action) != len(args):
        raise ValueError(f"usage: edged collector --config FILE {USAGE}")
    store = CollectorStore.open(target)
    try:
        pins = store.pins
        if action == "pin":
            with pins.transaction():
                pins.pin((args[0], args[1]), args[2], by="admin", now=utc_now_iso())
            return {"pinned": {"store": args[0], "terminal": args[1], "key": args[2].lower()}}
        if action == "forget":
            with pins.transaction():
                had = pins.forget((args[0], args[1]))
            return {"forgotten": had, "store": args[0], "terminal": args[1]}
        return {
            "collector_key": read_public(collector_key_path(target.local_files())),
            "terminals": [
                {
                    "store": p.store_id,
                    "terminal": p.terminal_id,
                    "key": p.key,
                    "pinned_by": p.pinned_by,
                    "pinned_at": p.pinned_at,
                }
                for p in pins.all()
            ],
        }
    except store.dialect.errors as exc:
        raise CollectorStoreError(f"collector db {target.path}: {exc}") from exc
    finally:
        store.close()
