"""A throwaway certificate authority for the directory and file-server tests (slapd, FTPS).

``ThrowawayCA(directory)`` makes a CA key and self-signed certificate; ``issue_server()``
signs a certificate for the loopback names (127.0.0.1, ::1, localhost) that slapd's GnuTLS
and pyftpdlib's pyOpenSSL both load from PEM files. Nothing here touches the system's trust
store: clients are given ``ca_path`` (a CA bundle), and a second ``ThrowawayCA`` is the
"wrong CA" that a verifying client must refuse.

EC P-256 keys keep generation fast (milliseconds, so one CA per test session is cheap) and
are accepted by every TLS stack the tests meet. The certificates are valid for a day, backdated
by an hour so a clock a little behind does not make them "not yet valid".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files of one server certificate: ``cert_path`` (leaf), ``key_path`` (unencrypted PKCS#8)."""

    cert_path: Path
    key_path: Path
    chain_path: Path  # leaf followed by the CA certificate, for servers that want the chain in one file


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # servers (sshd, slapd) rightly complain about private keys others can read


class ThrowawayCA:
    """A CA whose key lives only in ``directory``; ``ca_path`` is the bundle clients trust."""

    def __init__(self, directory: Path, name: str = "Switchboard Test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._now = dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = (
            self._builder(_name(name), self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_text(self.ca_pem)

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(_name(self.name))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(self._now - dt.timedelta(hours=1))
                .not_valid_after(self._now + dt.timedelta(days=1)))

    def issue_server(self, stem: str = "server", names: tuple[str, ...] = LOOPBACK_NAMES) -> ServerCertificate:
        """A server certificate for ``names`` (IP addresses become IP SANs), written as ``<stem>.pem/.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for value in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError:
                alt_names.append(x509.DNSName(value))
        certificate = (
            self._builder(_name(names[0]), key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        chain_path = self.directory / f"{stem}-chain.pem"
        leaf = certificate.public_bytes(serialization.Encoding.PEM).decode()
        cert_path.write_text(leaf)
        chain_path.write_text(leaf + self.ca_pem)
        _write_key(key, key_path)
        return ServerCertificate(cert_path, key_path, chain_path)
