"""Test PKI and broker users: CAs, server and client certificates, a mosquitto password file."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, name: str) -> None:
    """A CA `name`-ca.crt, a server cert for IP 127.0.0.1 and a client cert, signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt",
            "-days", "2", "-subj", f"/CN={name}-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for who in ("server", "client"):
        openssl("req", *ec, "-keyout", f"{name}-{who}.key", "-out", f"{name}-{who}.csr",
                "-subj", f"/CN={who}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}-{who}.csr", "-CA", f"{name}-ca.crt",
                "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}-{who}.crt",
                "-days", "2", "-extfile", "san.ext", cwd=d)  # fmt: skip


def make_tls_users(d: Path) -> None:
    """Two CAs (`good`, `other`) with their certificates, and broker user s1-t1 / s3cret.

    Writes `passwd` (mosquitto's password file), `s1-t1.pw` (the right password) and
    `wrong.pw` (a wrong one) into `d`.
    """
    make_pki(d, "good")
    make_pki(d, "other")
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "s1-t1", "s3cret"],
        check=True,
        capture_output=True,
    )
    (d / "s1-t1.pw").write_text("s3cret\n")
    (d / "wrong.pw").write_text("guess\n")
