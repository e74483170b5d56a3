"""A fake Vault with a known cast, and builders for Vault definitions, gates and channels.

The cast Vault knows: Switchboard's own token (allowed to look others up), a caller's
token for the CI bot, a userpass user ``vera`` and a GitHub token for ``octocat``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connections.models import VaultConnection
from connections.vault_inbound import VaultGate
from tests.servers.ftpd import FtpServer
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
from tests.servers.slapd import SlapdServer, create_subtree, delete_subtree
from tests.servers.sshd import SshServer
from tests.servers.testca import ThrowawayCA
from tests.servers.vault import FakeVault

OWN_TOKEN = "hvs.switchboard-own-token-0001"
CALLER_TOKEN = "hvs.ci-bot-caller-token-0002"
USERNAME = "vera"
PASSWORD = "vera-Pa55word-0003"
GITHUB_TOKEN = "ghp_octocatGitHubToken0004"
CHANNEL = "/api/vault-protected"

# Chooser services for Vault definitions (deployed by test_vault_gate.py and test_vault_channel.py).
CHOOSER = """
    import json
    from integration.services import Service

    class FromBody(Service):
        '''Credentials travel in the JSON body; the answer uses WSGI-style header keys.'''
        name = "vault-choosers.from-body"

        def handle(self):
            body = json.loads(self.request.payload["body"] or "{}")
            self.response.payload = {"method": "username-password", "headers": {
                "HTTP_X_ZATO_VAULT_USERNAME": body.get("user"), "HTTP_X_ZATO_VAULT_PASSWORD": body.get("pass")}}

    class FromAuthorization(Service):
        '''A bearer token in Authorization is a Vault token; the answer uses HTTP-style header names.'''
        name = "vault-choosers.from-authorization"

        def handle(self):
            payload = self.request.payload
            assert payload["sec_def"] == "vault-callers"
            token = payload["headers"].get("Authorization", "").removeprefix("Bearer ")
            self.response.payload = {"method": "token", "headers": {"X-Zato-Vault-Token": token}}

    class Broken(Service):
        name = "vault-choosers.broken"

        def handle(self):
            raise RuntimeError("the chooser fell over")

    class Nonsense(Service):
        name = "vault-choosers.nonsense"

        def handle(self):
            self.response.payload = {"method": "carrier-pigeon", "headers": {}}

    class NotAnObject(Service):
        name = "vault-choosers.not-an-object"

        def handle(self):
            self.response.payload = ["token"]
"""


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


# --- Directory and file servers: OpenLDAP slapd, OpenSSH sshd (SFTP), pyftpdlib (FTP/FTPS) -------------
#
# Each is session-scoped, so under xdist every worker starts its own (they take 0.1-0.3 s, and
# nothing is shared between workers to race on). Tests share a server and stay apart through a
# fresh place of their own: ``ldap_subtree`` (an ou under dc=example,dc=com), ``sftp_dir`` and
# ``ftp_dir`` (a directory in the user's home). The servers' own content (the LDAP cast,
# /data/current.csv, readonly/, locked/, full/) is read-only by convention; a test that must
# change it or stop a server starts its own with ``slapd_factory`` / ``ftpd_factory`` or the
# classes themselves. See tests/servers/slapd.py, sshd.py, ftpd.py and sandbox.py.

SERVER_MARKERS = {"slapd": "ldap", "slapd_factory": "ldap", "sshd": "sftp", "ftpd": "ftp", "ftpd_factory": "ftp"}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Mark every test that uses one of these servers (``-m "not ldap"`` then leaves them out)."""
    for item in items:
        for fixture, marker in SERVER_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def _test_dir_name(request: Any) -> str:
    """``t-<test name>-<random>``: a name that says whose files these are when a test leaves some behind."""
    return f"t-{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)[:48]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def directory_ca(tmp_path_factory: Any) -> ThrowawayCA:
    """The CA that signs the slapd and FTPS certificates (``ca_path`` is the bundle clients trust)."""
    return ThrowawayCA(tmp_path_factory.mktemp("directory-ca"))


@pytest.fixture(scope="session")
def slapd(directory_ca: ThrowawayCA) -> Iterator[SlapdServer]:
    """OpenLDAP with the test directory (``CAST`` in cn=users, the bind user), plain + StartTLS and ldaps ports."""
    with SlapdServer(directory_ca) as server:
        yield server


@pytest.fixture
def slapd_factory(directory_ca: ThrowawayCA) -> Iterator[Callable[..., SlapdServer]]:
    """``slapd_factory(**options)``: another started slapd with the same directory, closed after the test."""
    started: list[SlapdServer] = []

    def _start(**options: Any) -> SlapdServer:
        options.setdefault("name", f"slapd-{len(started) + 1}")
        server = SlapdServer(directory_ca, **options)
        started.append(server)
        return server.start()

    yield _start
    for server in started:
        server.close()


@pytest.fixture
def ldap_subtree(slapd: SlapdServer) -> Iterator[str]:
    """The DN of a fresh, empty ``ou=t-...,dc=example,dc=com`` for this test; deleted with its content after."""
    conn = slapd.connect()
    dn = create_subtree(conn)
    yield dn
    delete_subtree(conn, dn)
    conn.unbind()


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """OpenSSH's sshd: ``TEST_USER`` logs in with a password or a key; exec, and SFTP with OpenSSH's extensions."""
    with SshServer() as server:
        yield server


@pytest.fixture
def sftp_dir(sshd: SshServer, request: Any) -> Iterator[Path]:
    """A fresh directory in the SFTP user's home, owned by that user; its absolute path is the remote path too."""
    path = sshd.root.make_own_dir(_test_dir_name(request))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ftpd(directory_ca: ThrowawayCA) -> Iterator[FtpServer]:
    """pyftpdlib with one user, /data/current.csv, passive and active mode, explicit FTPS optional (AUTH TLS)."""
    with FtpServer(directory_ca) as server:
        yield server


@pytest.fixture
def ftpd_factory(directory_ca: ThrowawayCA) -> Iterator[Callable[..., FtpServer]]:
    """``ftpd_factory(**options)``: another started FTP server (e.g. ``tls_required=True``), closed after the test."""
    started: list[FtpServer] = []

    def _start(**options: Any) -> FtpServer:
        server = FtpServer(directory_ca, **options)
        started.append(server)
        return server.start()

    yield _start
    for server in started:
        server.close()


@pytest.fixture
def ftp_dir(ftpd: FtpServer, request: Any) -> Iterator[str]:
    """A fresh directory for this test, as its FTP path (``/t-...``); on disk it is ``ftpd.home / path[1:]``."""
    path = ftpd.root.make_own_dir(_test_dir_name(request))
    yield "/" + path.name
    shutil.rmtree(path, ignore_errors=True)
