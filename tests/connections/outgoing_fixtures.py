"""Builders for the outgoing HTTP connection tests: OAuth definitions, REST and FHIR rows, a clean token cache.

Imported by the ``test_outgoing_*`` modules (``from tests.connections.outgoing_fixtures import *`` is
avoided: each names what it uses). Rows are saved, so the snapshot compiles them as in production.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from accounts import oauth
from accounts.models import OAuthDefinition
from connections.models import OutgoingFhir, OutgoingRest
from integration import snapshot
from tests.servers.http_handles import OAuthClient, OAuthServer


def clear_token_cache() -> None:
    """Forget every token: this process's sources and the shared cache's keys (only ours, in our Redis DB)."""
    oauth.forget_sources()
    oauth.store.cache_clear()
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=oauth.KEY_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(autouse=True)
def _empty_token_cache() -> Iterator[None]:
    clear_token_cache()
    yield
    clear_token_cache()


def closed_port() -> int:
    """A port nothing listens on: bound by the OS, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_oauth_def(oauth_server: OAuthServer, client: OAuthClient, name: str = "okta", **fields: Any
                   ) -> OAuthDefinition:
    fields.setdefault("token_url", oauth_server.token_url)
    fields.setdefault("timeout", 3.0)
    definition = OAuthDefinition(name=name, client_id=client.client_id, **fields)
    definition.set_secret(client.client_secret)
    definition.save()
    return definition


def make_rest(name: str = "REST Server", *, address: str, password: str = "", **fields: Any) -> OutgoingRest:
    fields.setdefault("timeout", 3.0)
    row = OutgoingRest(name=name, address=address, **fields)
    if password:
        row.set_password(password)
    row.save()
    return row


def make_fhir(name: str = "My EHR", *, address: str, password: str = "", **fields: Any) -> OutgoingFhir:
    fields.setdefault("timeout", 3.0)
    row = OutgoingFhir(name=name, address=address, **fields)
    if password:
        row.set_password(password)
    row.save()
    return row


def out(kind: str, name: str) -> Any:
    """What ``self.out.<kind>[name]`` gives a service, from the current snapshot."""
    return snapshot.current().outgoing.get(kind, name)


def backend_requests(server: Any, path: str) -> list[dict[str, Any]]:
    return server.requests(path)


Maker = Callable[..., Any]
