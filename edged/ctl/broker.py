"""Broker checks of `edgectl doctor`: TCP, then TLS with the configured files, then MQTT CONNECT.

Each step says which one failed, because "cannot connect" means a cable to one technician and
a certificate to another. The MQTT step uses its own client id (never the terminal's: a second
connection with that id would throw the running daemon off the broker) and no will, so it
leaves nothing behind at the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from datetime import UTC, datetime

import aiomqtt

from edged.config import Config, UplinkSection, read_password, strict_tls_hint, tls_context
from edged.ctl.checks import Check
from edged.ctl.secretfiles import closed_to_me
from edged.errors import ConfigError
from edged.uplink.client import peer_of

CONNECT_TIMEOUT_S = 10.0
CERT_RENEW_DAYS = 30  # WARN when the broker's certificate expires sooner
_quiet = logging.getLogger("edged.ctl.mqtt")
_quiet.setLevel(logging.ERROR)


async def _tcp(up: UplinkSection) -> Check:
    where = f"{up.host}:{up.effective_port}"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_connection(up.host, up.effective_port)
        writer.close()
        await writer.wait_closed()
    except TimeoutError:
        return Check(
            "broker tcp",
            "FAIL",
            f"{where}: no answer within {CONNECT_TIMEOUT_S:g} s",
            "check the network path (cable, VLAN, firewall) to the store broker",
        )
    except OSError as exc:
        problem = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        return Check(
            "broker tcp",
            "FAIL",
            f"{where}: {problem}",
            "is the broker running and listening there? check uplink.host and uplink.port",
        )
    return Check("broker tcp", "OK", f"{where} accepts connections")


def _expiry(not_after: str) -> datetime:
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)


async def _tls(up: UplinkSection, context: ssl.SSLContext) -> Check:
    where = f"{up.host}:{up.effective_port}"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_connection(
                up.host, up.effective_port, ssl=context, server_hostname=up.host
            )
    except ssl.SSLCertVerificationError as exc:
        return Check(
            "broker tls",
            "FAIL",
            f"{where}: the broker's certificate is refused: {exc.verify_message}",
            strict_tls_hint(exc.verify_message)
            or f"uplink.ca_file must hold the CA that signed it and {up.host} must be one of "
            "its names; a clock far off also fails here (see the clock line)",
        )
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        return Check(
            "broker tls",
            "FAIL",
            f"{where}: TLS handshake failed: {exc}",
            "does the broker speak TLS on this port (usually 8883)? does it want a client "
            "certificate (uplink.cert_file, key_file)?",
        )
    version = writer.get_extra_info("ssl_object").version()
    cert = writer.get_extra_info("peercert") or {}
    writer.close()
    with contextlib.suppress(ssl.SSLError, OSError):  # brokers may drop a silent client
        await writer.wait_closed()
    if "notAfter" not in cert:
        return Check("broker tls", "OK", f"{where}: {version}, certificate verified")
    expires = _expiry(cert["notAfter"])
    days = (expires - datetime.now(UTC)).days
    found = f"{where}: {version}, certificate verified, valid until {expires:%Y-%m-%d}"
    if days < CERT_RENEW_DAYS:
        left = f"{days} day{'' if days == 1 else 's'} left"
        return Check("broker tls", "WARN", f"{found} ({left})", "renew it in time")
    return Check("broker tls", "OK", found)


def _hint(text: str) -> str:
    lowered = text.lower()
    if "not authori" in lowered or "user name or password" in lowered:
        return "check uplink.username and password_file, and that the broker knows this user"
    if "identifier" in lowered:
        return "the broker refused the client id; check its client id rules"
    return "see the broker's log"


async def _mqtt(cfg: Config, up: UplinkSection, context: ssl.SSLContext | None) -> Check:
    if up.password_file and closed_to_me(up.password_file):
        return Check(
            "broker mqtt",
            "WARN",
            f"CONNECT not tried: {up.password_file} is closed to this user, as it should be "
            "(only edged reads the broker password; the password file line says if edged can)",
            "to try the broker login too, run `sudo edgectl doctor`",
        )
    try:
        password = read_password(up, cfg.source)
    except ConfigError as exc:
        return Check("broker mqtt", "FAIL", exc.problem, "fix the password file")
    who = f"as user {up.username}" if up.username else "without a user name"
    client_id = f"edgectl-{cfg.terminal.store_id}-{cfg.terminal.terminal_id}-{os.getpid()}"
    client = aiomqtt.Client(
        up.host,
        up.effective_port,
        username=up.username,
        password=password,
        identifier=client_id,
        logger=_quiet,
        clean_session=True,
        timeout=CONNECT_TIMEOUT_S,
        tls_context=context,
    )
    try:
        async with client:
            pass
    except aiomqtt.MqttError as exc:
        return Check("broker mqtt", "FAIL", f"CONNECT {who} refused: {exc}", _hint(str(exc)))
    return Check("broker mqtt", "OK", f"{peer_of(up)}: CONNECT {who} accepted")


async def broker_checks(cfg: Config) -> list[Check]:
    """TCP, TLS (when configured) and MQTT CONNECT; stops at the first step that fails."""
    up = cfg.uplink
    if up is None:
        return [Check("broker", "OK", "no [uplink]: a journal-only terminal, nothing to reach")]
    tcp = await _tcp(up)
    if tcp.level == "FAIL":
        return [tcp]
    try:
        context = tls_context(up, cfg.source)  # None without TLS
    except ConfigError as exc:
        return [tcp, Check("broker tls", "FAIL", f"{exc.key}: {exc.problem}", "fix it")]
    checks = [tcp]
    if context is not None:
        tls = await _tls(up, context)
        checks.append(tls)
        if tls.level == "FAIL":
            return checks
    checks.append(await _mqtt(cfg, up, context))
    return checks
