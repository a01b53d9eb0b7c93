"""Throw-away X.509 material for TLS tests: one CA, a server and a client certificate.

``make_pki`` lays them out like cert-manager's Secrets (ca.crt, tls.crt, tls.key), as the chart
mounts them; ``make_pki_clients`` is the same with client certificates of the names you choose
(several peers of one CA); ``make_tls_files`` is the PKI for a server on 127.0.0.1/localhost,
named by role.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertDir:
    """A directory holding ca.crt, tls.crt and tls.key."""

    path: Path

    @property
    def ca(self) -> Path:
        return self.path / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.path / "tls.crt"

    @property
    def key(self) -> Path:
        return self.path / "tls.key"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(name: str) -> x509.GeneralName:
    """An IP address SAN for a literal address, a DNS name SAN otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_pki(root: Path, server_names: list[str]) -> tuple[CertDir, CertDir]:
    """(server dir, client dir), both signed by one new CA; the server cert names `server_names`
    and, like the chart asks for, serves both server and client auth (its probe presents it).
    The client certificate's CN and DNS SAN are ``bridge``."""
    server, clients = make_pki_clients(root, server_names, ["bridge"])
    return server, clients["bridge"]


def make_pki_clients(root: Path, server_names: list[str], client_names: Sequence[str]
                     ) -> tuple[CertDir, dict[str, CertDir]]:
    """(server dir, client name -> its dir) of one new CA: each client certificate's CN and DNS
    SAN are its name, so tests can tell peers apart by certificate (cache_service.trust)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("marketbridge test CA")).issuer_name(_name("marketbridge test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    dirs = []
    peers = [("server", server_names[0], server_names)] + [(f"client-{n}", n, [n]) for n in client_names]
    for kind, cn, sans in peers:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        out = CertDir(root / kind)
        out.path.mkdir(parents=True)
        out.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(_pem_key(key))
        dirs.append(out)
    return dirs[0], dict(zip(client_names, dirs[1:], strict=True))


@dataclass(frozen=True)
class TlsFiles:
    """The files of ``make_tls_files``, named by role."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server pair for localhost/127.0.0.1 and a client pair, under ``directory``."""
    server, client = make_pki(directory, ["localhost", "127.0.0.1"])
    return TlsFiles(server.ca, server.cert, server.key, client.cert, client.key)
