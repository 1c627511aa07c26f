"""Test PKI and broker users: CAs, server and client certificates, a mosquitto password file.

The certificates carry the extensions strict X.509 verification wants (Python 3.13 turns it
on by default, edged on every version), as the README's TLS recipe makes them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# The README's recipe, with the broker's name set to the loopback address the tests use.
EXTENSIONS = """\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[legacy_ca]
basicConstraints = critical, CA:TRUE
subjectKeyIdentifier = hash
[broker]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[till]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, name: str, *, ca_key_usage: bool = True) -> None:
    """A CA `name`-ca.crt, a server cert for IP 127.0.0.1 and a client cert, signed by it.

    `ca_key_usage=False` makes the CA as many home-made ones are: without keyUsage, which
    strict verification refuses ("CA cert does not include key usage extension").
    """
    (d / "pki.cnf").write_text(EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_section = "ca" if ca_key_usage else "legacy_ca"
    openssl("req", "-x509", "-config", "pki.cnf", "-extensions", ca_section, *ec,
            "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt",
            "-days", "2", "-subj", f"/CN={name}-ca", cwd=d)  # fmt: skip
    for who, section in (("server", "broker"), ("client", "till")):
        openssl("req", "-config", "pki.cnf", *ec, "-keyout", f"{name}-{who}.key",
                "-out", f"{name}-{who}.csr", "-subj", f"/CN={who}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}-{who}.csr", "-CA", f"{name}-ca.crt",
                "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}-{who}.crt",
                "-days", "2", "-extfile", "pki.cnf", "-extensions", section, cwd=d)  # fmt: skip


def make_tls_users(d: Path) -> None:
    """Three CAs (`good`, `other`, and `legacy` without keyUsage) with their certificates,
    and broker user s1-t1 / s3cret.

    Writes `passwd` (mosquitto's password file), `s1-t1.pw` (the right password) and
    `wrong.pw` (a wrong one) into `d`.
    """
    make_pki(d, "good")
    make_pki(d, "other")
    make_pki(d, "legacy", ca_key_usage=False)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "s1-t1", "s3cret"],
        check=True,
        capture_output=True,
    )
    (d / "s1-t1.pw").write_text("s3cret\n")
    (d / "wrong.pw").write_text("guess\n")
