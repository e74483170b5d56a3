"""pytest fixtures for the loopback HTTP servers: the token server, REST backends, FHIR servers.

Import the ones you use into a ``conftest.py`` (``tests/connections/conftest.py`` imports
them all). Each server process is started once per test session (once per xdist worker) on
first use, and stopped at the end of the session. The function-scoped fixtures hand a test
that shared server *reset*: switches off, request log empty, the app's state as at start (the
token server forgets every token and client registered since; the REST backend's customers
and the FHIR server's resources are the seed again). They reset it again afterwards, so a
test that leaves a server down or slow cannot harm the next one.

* ``oauth_server``: ``OAuthServer``; ``oauth_client``: a fresh client of its own for the test
  (every scope in ``SCOPES``, tokens for 60 s); ``make_oauth_client(**fields)`` for others.
* ``rest_backend`` (OAuth bearer tokens), ``rest_backend_basic``, ``rest_backend_apikey``,
  ``rest_backend_open`` (no security), ``rest_backend_tls`` (HTTPS with ``loopback_ca``, no
  security): ``RestBackend``.
* ``fhir_server`` (OAuth), ``fhir_server_basic``, ``fhir_server_open``: ``FhirServer``; give
  fhirpy its ``base_url``.
* ``loopback_ca``: the ``LoopbackCA`` behind the HTTPS servers (``ca_cert``, ``other_ca_cert``).
* ``http_servers``: the session's ``HttpServers``, for other combinations (then reset yourself).
* ``private_http_servers``: an ``HttpServers`` of the test's own, stopped when it ends, for tests
  that kill a server or need one nobody else touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers.http_handles import SCOPES, FhirServer, HttpServers, OAuthClient, OAuthServer, RestBackend
from tests.servers.tls import LoopbackCA


@pytest.fixture(scope="session")
def http_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServers]:
    """The loopback HTTP servers of this session (this xdist worker), each started on first use."""
    servers = HttpServers(tmp_path_factory.mktemp("http-servers"))
    yield servers
    servers.stop_all()


@pytest.fixture
def private_http_servers(tmp_path: Any) -> Iterator[HttpServers]:
    """Servers of this test only (started on first use, stopped after the test): kill them at will."""
    servers = HttpServers(tmp_path / "http-servers")
    yield servers
    servers.stop_all()


def _reset_around(server: Any) -> Iterator[Any]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def loopback_ca(http_servers: HttpServers) -> LoopbackCA:
    """The test CA: ``ca_cert`` verifies the HTTPS servers, ``other_ca_cert`` must not."""
    return http_servers.ca


@pytest.fixture
def oauth_server(http_servers: HttpServers) -> Iterator[OAuthServer]:
    """The token server (client credentials, introspection, revocation), reset for this test."""
    yield from _reset_around(http_servers.oauth())


@pytest.fixture
def make_oauth_client(oauth_server: OAuthServer) -> Callable[..., OAuthClient]:
    """``make_oauth_client(**fields)``: register a client (``OAuthServer.add_client`` fields)."""
    return oauth_server.add_client


@pytest.fixture
def oauth_client(oauth_server: OAuthServer) -> OAuthClient:
    """A client registered for this test only: every scope in ``SCOPES``, tokens valid 60 s, both auth methods."""
    return oauth_server.add_client(scopes=SCOPES, expires_in=60)


@pytest.fixture
def rest_backend(http_servers: HttpServers, oauth_server: OAuthServer) -> Iterator[RestBackend]:
    """The REST backend requiring bearer tokens from ``oauth_server`` (checked by introspection)."""
    yield from _reset_around(http_servers.rest("oauth"))


@pytest.fixture
def rest_backend_basic(http_servers: HttpServers) -> Iterator[RestBackend]:
    """The REST backend requiring HTTP Basic (``RestBackend.basic_auth``)."""
    yield from _reset_around(http_servers.rest("basic"))


@pytest.fixture
def rest_backend_apikey(http_servers: HttpServers) -> Iterator[RestBackend]:
    """The REST backend requiring ``RestBackend.api_key`` in the ``RestBackend.api_key_header`` header."""
    yield from _reset_around(http_servers.rest("apikey"))


@pytest.fixture
def rest_backend_open(http_servers: HttpServers) -> Iterator[RestBackend]:
    """The REST backend without security."""
    yield from _reset_around(http_servers.rest("none"))


@pytest.fixture
def rest_backend_tls(http_servers: HttpServers) -> Iterator[RestBackend]:
    """The REST backend over HTTPS (certificate from ``loopback_ca``), without security."""
    yield from _reset_around(http_servers.rest("none", tls=True))


@pytest.fixture
def fhir_server(http_servers: HttpServers, oauth_server: OAuthServer) -> Iterator[FhirServer]:
    """The FHIR R4 server requiring bearer tokens from ``oauth_server``; ``metadata`` stays public."""
    yield from _reset_around(http_servers.fhir("oauth"))


@pytest.fixture
def fhir_server_basic(http_servers: HttpServers) -> Iterator[FhirServer]:
    """The FHIR R4 server requiring HTTP Basic (``FhirServer.basic_auth``); ``metadata`` stays public."""
    yield from _reset_around(http_servers.fhir("basic"))


@pytest.fixture
def fhir_server_open(http_servers: HttpServers) -> Iterator[FhirServer]:
    """The FHIR R4 server without security."""
    yield from _reset_around(http_servers.fhir("none"))
