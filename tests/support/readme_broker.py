"""The broker example of README.md, read from the README itself so the tests and the text agree."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
# The mosquitto settings that decide who may connect as whom; the rest of the README's broker
# config (TLS files, persistence paths, queue sizes) is the store's business, not identity.
IDENTITY_KEYS = ("allow_anonymous", "use_username_as_clientid", "clientid_prefixes")


def block(first_line: str) -> str:
    """The fenced block of README.md whose first line is `first_line`, without that line."""
    lines = README.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == first_line and i > 0 and lines[i - 1].startswith("```"):
            body: list[str] = []
            for rest in lines[i + 1 :]:
                if rest.startswith("```"):
                    return "\n".join(body) + "\n"
                body.append(rest)
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


def acl() -> str:
    """The README's mosquitto ACL file, as printed."""
    return block("# /etc/mosquitto/acl")


def identity_conf() -> str:
    """The README's mosquitto.conf lines on identity (IDENTITY_KEYS), as printed."""
    conf = block("# /etc/mosquitto/conf.d/edged.conf")
    kept = [line for line in conf.splitlines() if line.split(" ", 1)[0] in IDENTITY_KEYS]
    return "\n".join(kept) + "\n"


def bridge_conf(address: str) -> str:
    """The README's store-to-chain bridge, connecting to `address` (host:port) instead."""
    lines = block("# /etc/mosquitto/conf.d/edged-bridge.conf").splitlines()
    return (
        "\n".join(f"address {address}" if line.startswith("address ") else line for line in lines)
        + "\n"
    )
