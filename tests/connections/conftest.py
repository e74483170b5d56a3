"""A fake Vault with a known cast, and builders for Vault definitions, gates and channels.

The cast Vault knows: Switchboard's own token (allowed to look others up), a caller's
token for the CI bot, a userpass user ``vera`` and a GitHub token for ``octocat``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connections.models import VaultConnection
from connections.vault import VaultGate
from tests.servers.http_fixtures import (  # noqa: F401 - fixtures for the outgoing HTTP connection tests
    fhir_server,
    fhir_server_basic,
    fhir_server_open,
    http_servers,
    loopback_ca,
    make_oauth_client,
    oauth_client,
    oauth_server,
    private_http_servers,
    rest_backend,
    rest_backend_apikey,
    rest_backend_basic,
    rest_backend_open,
    rest_backend_tls,
)
from tests.servers.vault import FakeVault

OWN_TOKEN = "hvs.switchboard-own-token-0001"
CALLER_TOKEN = "hvs.ci-bot-caller-token-0002"
USERNAME = "vera"
PASSWORD = "vera-Pa55word-0003"
GITHUB_TOKEN = "ghp_octocatGitHubToken0004"
CHANNEL = "/api/vault-protected"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    with FakeVault() as fake:
        fake.add_token(OWN_TOKEN, policies=["token-lookup"], display_name="switchboard", may_look_up_others=True)
        fake.add_token(CALLER_TOKEN, policies=["default", "reader"], display_name="token-ci",
                       meta={"username": "ci-bot"}, ttl=600)
        fake.add_user(USERNAME, PASSWORD, policies=["default", "crm"], lease_duration=1800)
        fake.add_github(GITHUB_TOKEN, "octocat", policies=["default", "dev"], lease_duration=3600)
        yield fake


@pytest.fixture
def vault_def(db: None, vault: FakeVault) -> Callable[..., VaultConnection]:
    """``vault_def(**fields)``: a saved Vault definition pointing at the fake Vault, with Switchboard's token."""

    def _make(name: str = "vault-callers", token: str = OWN_TOKEN, **fields: Any) -> VaultConnection:
        fields.setdefault("url", vault.url)
        fields.setdefault("timeout", 2.0)
        definition = VaultConnection(name=name, **fields)
        definition.set_token(token)
        definition.save()
        return definition

    return _make


@pytest.fixture
def gate(vault_def: Callable[..., VaultConnection]) -> Callable[..., VaultGate]:
    """``gate(**fields)``: a ``VaultGate`` built from a fresh definition, as a snapshot builds it."""

    def _make(**fields: Any) -> VaultGate:
        return VaultGate.from_definition(vault_def(**fields))

    return _make


@pytest.fixture
def vault_channel(make_channel: Callable[..., Any], vault_def: Callable[..., VaultConnection]
                  ) -> Callable[..., VaultConnection]:
    """``vault_channel(**fields)``: ``GET/POST CHANNEL`` (demo.hello) secured by a new Vault definition."""

    def _make(**fields: Any) -> VaultConnection:
        definition = vault_def(**fields)
        make_channel(CHANNEL, "demo.hello", security=definition, name="vault-protected")
        return definition

    return _make


def no_body() -> bytes:
    raise AssertionError("the body was read although no chooser service needs it")


def wsgi(value: str) -> str:
    """What a WSGI server puts in environ for a header sent as UTF-8: its bytes decoded as latin-1."""
    return value.encode().decode("latin-1")


# --- TLS material for the HTTPS tests ------------------------------------------------------------


@dataclass
class TLSFiles:
    ca_pem: str
    server_cert: Path
    server_key: Path
    client_cert_pem: str
    client_key_pem: str


def make_tls(directory: Path) -> TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def builder(subject: str, issuer: str, public: Any) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1)))

    def pem_key(private: Any) -> str:
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()

    ca_key = key()
    ca = (builder("Test Vault CA", "Test Vault CA", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = key()
    server = (builder("127.0.0.1", "Test Vault CA", server_key.public_key())
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    client_key = key()
    client = (builder("switchboard", "Test Vault CA", client_key.public_key())
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    server_cert_path, server_key_path = directory / "server.pem", directory / "server.key"
    server_cert_path.write_bytes(server.public_bytes(pem))
    server_key_path.write_text(pem_key(server_key))
    return TLSFiles(ca.public_bytes(pem).decode(), server_cert_path, server_key_path,
                    client.public_bytes(pem).decode(), pem_key(client_key))
