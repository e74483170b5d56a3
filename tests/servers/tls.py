"""A throwaway certificate authority for the HTTPS loopback servers, made with ``cryptography``.

``make_loopback_ca(directory)`` writes PEM files: a CA, a server certificate it signed for
``127.0.0.1`` and ``localhost`` (with its key), and a second CA that signed nothing of ours.
A client given ``ca_cert`` as its CA bundle verifies the server; one given ``other_ca_cert``,
or the system's store, must fail verification, which is how the tests prove that TLS
verification is really on. Keys are P-256 (fast to make); certificates last one day.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LoopbackCA:
    """Paths of the PEM files ``make_loopback_ca`` wrote."""

    ca_cert: Path  # the CA bundle a client should trust
    server_cert: Path  # the server's certificate (127.0.0.1, localhost), signed by ca_cert
    server_key: Path
    other_ca_cert: Path  # a CA that did not sign the server certificate: verification fails

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context with the server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def make_loopback_ca(directory: Path) -> LoopbackCA:
    """Write a CA, a server certificate it signed and an unrelated CA into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = _ca("Switchboard loopback test CA", now)
    other_ca, _ = _ca("Some other CA", now)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = LoopbackCA(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                       directory / "other-ca.pem")
    files.ca_cert.write_bytes(ca.public_bytes(pem))
    files.other_ca_cert.write_bytes(other_ca.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.server_key.write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    return files
