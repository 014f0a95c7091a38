"""The facility's certificates for nodes on other machines, one command each (after ``nomad tls``).

``init(DIR)`` writes the facility CA and the platform's client certificate; ``issue(DIR, NAME, hosts)``
writes a node's server certificate, valid for its addresses or DNS names, used by the node's dockerd
(``--tlsverify --tlscacert ca.pem --tlscert server-cert.pem --tlskey server-key.pem``) and by its agent
(``asci node agent --tls-dir DIR/NAME``)::

    DIR/ca.pem  ca-key.pem (0600)          the facility CA (EC P-256, CA:TRUE, pathlen 0)
    DIR/cert.pem  key.pem (0600)           the platform's client certificate (clientAuth only)
    DIR/NAME/ca.pem  server-cert.pem  server-key.pem (0600)   node NAME (serverAuth only, CN = NAME)

A server certificate cannot act as a client and the client certificate cannot act as a server
(extended key usage), so one node's certificate opens no other node. Re-issuing replaces the
files (a dockerd and an agent read them at start; running desktops are not touched).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.errors import BadRequest

CA_DAYS = 3650
CERT_DAYS = 825
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_DNS = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@dataclass(frozen=True)
class Issued:
    """Files written by one command and when the certificate expires."""

    files: tuple[Path, ...]
    subject: str
    not_after: dt.datetime


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically with ``mode`` (a key is never readable by others, not even briefly)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: str, issuer: x509.Name | None, key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def _leaf(builder: x509.CertificateBuilder, usage) -> x509.CertificateBuilder:
    return (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))


def load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in ``folder`` (BadRequest when absent or unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{folder} holds no usable facility CA (run `asci node certs init {folder}`): {exc}") from None
    return cert, key


def init(folder: Path, name: str = "asci", days: int = CA_DAYS, client_days: int = CERT_DAYS,
         force: bool = False) -> list[Issued]:
    """Write the facility CA and the platform's client certificate into ``folder``.

    An existing CA is kept (BadRequest) unless ``force``: replacing it invalidates every node's
    certificate."""
    folder = Path(folder)
    if not _NAME.fullmatch(name):
        raise BadRequest(f"unusable CA name {name!r}")
    if (folder / "ca.pem").exists() and not force:
        raise BadRequest(f"{folder} already holds a facility CA (ca.pem); --force replaces it and every "
                         "certificate issued by it stops working")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (_builder(f"{name} facility CA", None, ca_key, days)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False, content_commitment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    _write(folder / "ca-key.pem", _key_pem(ca_key), 0o600)
    _write(folder / "ca.pem", _cert_pem(ca), 0o644)
    client = issue_client(folder, f"{name}-platform", days=client_days)
    return [Issued((folder / "ca.pem", folder / "ca-key.pem"), ca.subject.rfc4514_string(),
                   ca.not_valid_after_utc), client]


def issue_client(folder: Path, subject: str, days: int = CERT_DAYS) -> Issued:
    """(Re-)write the platform's client certificate ``folder/cert.pem`` and ``key.pem``."""
    ca, ca_key = load_ca(Path(folder))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_leaf(_builder(subject, ca.subject, key, days), ExtendedKeyUsageOID.CLIENT_AUTH)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(Path(folder) / "key.pem", _key_pem(key), 0o600)
    _write(Path(folder) / "cert.pem", _cert_pem(cert), 0o644)
    return Issued((Path(folder) / "cert.pem", Path(folder) / "key.pem"), cert.subject.rfc4514_string(),
                  cert.not_valid_after_utc)


def _alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not _DNS.fullmatch(host) or host.replace(".", "").isdigit():
                raise BadRequest(f"--host {host!r}: expected an IP address or a DNS name") from None
            names.append(x509.DNSName(host.lower()))
    if not names:
        raise BadRequest("a node certificate needs at least one --host (its IP address or DNS name)")
    return names


def issue(folder: Path, name: str, hosts: list[str], days: int = CERT_DAYS) -> Issued:
    """Write node ``name``'s server certificate, valid for ``hosts``, into ``folder/name`` (replacing one there)."""
    folder = Path(folder)
    if not _NAME.fullmatch(name):
        raise BadRequest(f"node name {name!r}: letters, digits, '.', '_' and '-' only")
    alternative = _alternative_names(list(hosts))
    ca, ca_key = load_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_leaf(_builder(name, ca.subject, key, days), ExtendedKeyUsageOID.SERVER_AUTH)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    target = folder / name
    target.mkdir(mode=0o700, exist_ok=True)
    _write(target / "server-key.pem", _key_pem(key), 0o600)
    _write(target / "server-cert.pem", _cert_pem(cert), 0o644)
    _write(target / "ca.pem", (folder / "ca.pem").read_bytes(), 0o644)
    return Issued((target / "ca.pem", target / "server-cert.pem", target / "server-key.pem"),
                  cert.subject.rfc4514_string(), cert.not_valid_after_utc)


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN ("" when it has none)."""
    found = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else ""


def not_after(path: Path) -> dt.datetime:
    """When the PEM certificate at ``path`` expires."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes()).not_valid_after_utc
