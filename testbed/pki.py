"""A throw-away PKI for the testbed: a CA, the API server's serving certificate, an admin
client certificate (group system:masters) and the service-account signing key."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files under one directory."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    front_proxy_cert: Path
    front_proxy_key: Path
    service_account_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _sign(
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue_serving_cert(
    directory: Path, name: str, ca_cert: Path, ca_key: Path, hosts: list[str]
) -> tuple[Path, Path]:
    """A serving certificate signed by the CA for `hosts` (IP addresses or DNS names)."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, rsa.RSAPrivateKey)
    key = _key()
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = _sign(
        _name(name),
        key.public_key(),
        ca.subject,
        signer,
        [
            (x509.SubjectAlternativeName(sans), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA, serving, admin and service-account material into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("vpa-fleet-testbed-ca")
    ca = _sign(
        ca_name,
        ca_key.public_key(),
        ca_name,
        ca_key,
        [(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    _write_cert(directory / "ca.crt", ca)
    _write_key(directory / "ca.key", ca_key)

    serving_cert, serving_key = issue_serving_cert(
        directory,
        "apiserver",
        directory / "ca.crt",
        directory / "ca.key",
        ["127.0.0.1", "10.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"],
    )

    client_auth = [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)]
    # The API server's identity towards aggregated API servers (request-header authentication).
    for file_name, subject in (
        ("admin", _name("admin", "system:masters")),
        ("front-proxy-client", _name("front-proxy-client")),
    ):
        key = _key()
        cert = _sign(subject, key.public_key(), ca_name, ca_key, client_auth)  # type: ignore[arg-type]
        _write_cert(directory / f"{file_name}.crt", cert)
        _write_key(directory / f"{file_name}.key", key)
    _write_key(directory / "sa.key", _key())
    return Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=serving_cert,
        serving_key=serving_key,
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        front_proxy_cert=directory / "front-proxy-client.crt",
        front_proxy_key=directory / "front-proxy-client.key",
        service_account_key=directory / "sa.key",
    )
