"""Outgoing HL7 FHIR connections: ``self.out.hl7.fhir[name].conn.client()``, fhirpy's synchronous client.

Service code, as the seed shows it::

    with self.out.hl7.fhir["My EHR"].conn.client() as client:
        practitioners = client.resources("Practitioner")
        result = practitioners.search(active=True, _id=456).get()
        patient = client.resource("Patient", name=[{"family": "Doe"}]); patient.save()

``client(cid=None)`` gives a ``fhirpy.SyncFHIRClient`` set up with the connection's base URL,
timeout, TLS settings and security: Basic (a precomputed header) or OAuth client credentials
(``accounts.oauth.BearerAuth``, so tokens are cached, refreshed before they expire and, after
a 401, replaced once). A ``cid`` given is sent as ``X-Zato-CID``. fhirpy's own errors
(``ResourceNotFound``, ``OperationOutcome``...) reach the service as they are; failures to get
an answer at all leave the ``with`` block as ``connections.http_common`` errors naming the
connection.

Each process keeps one ``requests.Session`` per connection (``POOL_SIZE`` sockets, no
cookies, nothing from the environment) and every client of the connection sends through it,
so calls reuse TCP (and TLS) connections; fhirpy's own sync client would open one per request
(module-level ``requests.request``). A changed row gets a new connection and session, and the
old session is closed when no snapshot uses it any more.

Ping reads ``[base]/metadata`` and checks it is a CapabilityStatement.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import (
    AuthorizationError,
    ForbiddenError,
    MultipleResourcesFound,
    OperationOutcome,
    ResourceNotFound,
)
from fhirpy.base.utils import AttrDict

from accounts import oauth
from connections.base import Connection, PingResult
from connections.http_common import pooled_session, translate, verify_setting
from integration.cid import new_cid

if TYPE_CHECKING:
    from connections.models import OutgoingFhir

KIND = "hl7.fhir"
LABEL = "HL7 FHIR"
POOL_SIZE = 20  # sockets kept per connection and process, as an outgoing REST connection's default


class PooledFHIRClient(SyncFHIRClient):
    """fhirpy's sync client sending through a connection's pooled ``requests.Session``.

    ``_do_request`` is fhirpy 2.3.1's (``fhirpy.base.lib_sync.SyncClient``) with
    ``requests.request`` replaced by ``session.request``: the same answers, statuses and
    exceptions. fhirpy is pinned; ``test_outgoing_fhir`` fails when its method changes, so an
    upgrade means reading the new one first.
    """

    def __init__(self, session: requests.Session, url: str, **options: Any) -> None:
        self.session = session
        super().__init__(url, **options)

    def _do_request(self, method: str, path: str, data: dict | None = None, params: dict | None = None,
                    extra_headers: dict | None = None, *, returning_status: bool = False) -> Any:
        headers = self._build_request_headers()
        if extra_headers:
            headers = {**headers, **extra_headers}
        url = self._build_request_url(path, params)
        r = self.session.request(method, url, json=data, headers=headers, **self.requests_config)
        if 200 <= r.status_code < 300:
            r_data = json.loads(r.content.decode(), object_hook=AttrDict) if r.content else None
            return (r_data, r.status_code) if returning_status else r_data
        if r.status_code == 401:
            raise AuthorizationError(r.content.decode())
        if r.status_code == 403:
            raise ForbiddenError(r.content.decode())
        if r.status_code == 304:
            return (None, r.status_code) if returning_status else None
        if r.status_code in (404, 410):
            raise ResourceNotFound(r.content.decode())
        if r.status_code == 412:
            raise MultipleResourcesFound(r.content.decode())
        raw_data = r.content.decode()
        try:
            parsed_data = json.loads(raw_data)
            if parsed_data["resourceType"] == "OperationOutcome":
                raise OperationOutcome(resource=parsed_data)
            raise OperationOutcome(reason=raw_data)
        except (KeyError, json.JSONDecodeError) as exc:
            raise OperationOutcome(reason=raw_data) from exc


@dataclass(frozen=True)
class FhirSettings:
    name: str
    address: str
    timeout: float = 10.0
    verify: bool | str = True
    authorization: str = ""  # a precomputed Basic header
    oauth_config: oauth.ClientConfig | None = None

    def __repr__(self) -> str:
        return f"FhirSettings(name={self.name!r}, address={self.address!r})"

    @classmethod
    def from_row(cls, row: OutgoingFhir) -> FhirSettings:
        authorization, oauth_config = "", None
        if row.auth_type == "basic":
            authorization = "Basic " + base64.b64encode(f"{row.username}:{row.get_password()}".encode()).decode()
        elif row.auth_type == "oauth" and row.oauth is not None:
            oauth_config = oauth.ClientConfig.from_definition(row.oauth, row.scope_list or None)
        return cls(row.name, row.address.rstrip("/"), float(row.timeout),
                   verify_setting(row.tls_verify, row.tls_ca_cert), authorization, oauth_config)


class FhirConnection(Connection):
    """``self.out.hl7.fhir[name]``; ``.conn`` is the connection itself, for Zato's spelling."""

    kind = KIND

    def __init__(self, settings: FhirSettings, *, is_active: bool = True) -> None:
        self.name = settings.name
        self.settings = settings
        self.is_active = is_active
        self._auth = oauth.BearerAuth(oauth.token_source(settings.oauth_config)) if settings.oauth_config else None
        self.session = pooled_session(POOL_SIZE, settings.verify, self._auth)

    @classmethod
    def from_row(cls, row: OutgoingFhir) -> FhirConnection:
        return cls(FhirSettings.from_row(row), is_active=row.is_active)

    @property
    def conn(self) -> FhirConnection:
        return self

    def requests_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"timeout": self.settings.timeout, "verify": self.settings.verify,
                                  "allow_redirects": False}
        if self._auth is not None:
            config["auth"] = self._auth
        return config

    def make_client(self, cid: str | None = None) -> SyncFHIRClient:
        headers = {"X-Zato-CID": cid} if cid else None
        return PooledFHIRClient(self.session, self.settings.address, authorization=self.settings.authorization or None,
                                extra_headers=headers, requests_config=self.requests_config())

    @contextmanager
    def client(self, cid: str | None = None) -> Iterator[SyncFHIRClient]:
        """A fhirpy client; network failures inside the block become errors naming this connection."""
        try:
            yield self.make_client(cid)
        except requests.RequestException as exc:
            raise translate(exc, LABEL, self.name, self.settings.address, self.settings.timeout) from None

    def ping(self) -> PingResult:
        url = self.settings.address + "/metadata"
        headers = {"Accept": "application/fhir+json", "X-Zato-CID": new_cid()}
        if self.settings.authorization:
            headers["Authorization"] = self.settings.authorization
        started = time.perf_counter()
        try:
            response = self.session.get(url, headers=headers, **self.requests_config())
        except oauth.TokenUnavailable as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, str(exc.details))
        except requests.RequestException as exc:
            error = translate(exc, LABEL, self.name, url, self.settings.timeout)
            return PingResult(False, (time.perf_counter() - started) * 1000, f"GET {url}: {error.reason}")
        ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            return PingResult(False, ms, f"GET {url} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            return PingResult(False, ms, f"GET {url} answered 200 without a CapabilityStatement: is it a FHIR server?")
        software = body.get("software") if isinstance(body.get("software"), dict) else {}
        about = " ".join(str(software[k]) for k in ("name", "version") if isinstance(software.get(k), str))
        info = f"FHIR {body.get('fhirVersion', '?')} CapabilityStatement" + (f" from {about}" if about else "")
        return PingResult(True, ms, info)

    def close(self) -> None:
        self.session.close()


def ping_row(row: OutgoingFhir) -> PingResult:
    """Ping a row as saved, with a connection made for it and closed after."""
    connection = FhirConnection.from_row(row)
    try:
        return connection.ping()
    finally:
        connection.close()
