"""The WebSocket origin policy (integration/channels/ws_routing.py): host, scheme and port all count.

An origin is a scheme, a host and a port: a page from another program on the same machine (a
development server on another port, say) is another origin, and must not ride on credentials a
browser attaches to the handshake. Handshakes without ``Origin`` (programs) pass; the
channel's own security applies to them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from integration.channels.ws_routing import OriginPolicy, allowed_origins


class Accepting(AsyncWebsocketConsumer):
    """Stands for the channel consumer: accepts whatever the policy lets through."""

    async def connect(self) -> None:
        await self.accept()


def policy(settings: Any, *, origins: list[str] | None = None, https: bool = False) -> OriginPolicy:
    settings.WEBSOCKET_ALLOWED_ORIGINS = origins or []
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", ".example.net"]
    settings.PORT, settings.WEBSOCKET_PORT, settings.HTTPS = 8000, 8001, https
    return OriginPolicy(Accepting.as_asgi(), allowed_origins())


def allows(checker: OriginPolicy, origin: str | None) -> bool:
    return checker.allows(None if origin is None else origin.encode("latin-1"))


def test_without_a_list_the_platforms_own_pages_are_allowed_on_its_ports_only(settings) -> None:
    checker = policy(settings)
    for origin in ("http://127.0.0.1:8000", "http://127.0.0.1:8001", "http://localhost", "https://localhost",
                   "http://[::1]:8000", "https://api.example.net", "http://LOCALHOST:8000", None):
        assert allows(checker, origin), origin
    # Same host, another port: another program's pages. Other hosts, and what is no origin at all.
    for origin in ("http://127.0.0.1:6666", "http://localhost:8080", "https://127.0.0.1:8443", "http://evil.example",
                   "http://127.0.0.1.evil.example:8000", "null", "", "file://", "127.0.0.1:8000",
                   "http://127.0.0.1:99999", "http://[::1", "http://127.0.0.1:80a"):
        assert not allows(checker, origin), origin


def test_with_https_only_https_pages_are_the_platforms_own(settings) -> None:
    checker = policy(settings, https=True)
    assert allows(checker, "https://127.0.0.1:8000")
    assert allows(checker, "https://localhost")
    assert not allows(checker, "http://127.0.0.1:8000")
    assert not allows(checker, "http://localhost")


def test_a_listed_origin_with_a_scheme_matches_that_scheme_host_and_port(settings) -> None:
    checker = policy(settings, origins=["https://app.example.com", "http://ops.example.com:8080"])
    assert allows(checker, "https://app.example.com")
    assert allows(checker, "https://app.example.com:443")  # the default port, written out
    assert allows(checker, "http://ops.example.com:8080")
    for origin in ("https://app.example.com:8443", "http://app.example.com", "http://ops.example.com",
                   "https://ops.example.com:8080", "http://127.0.0.1:8000"):  # the list replaces the default
        assert not allows(checker, origin), origin


def test_a_listed_host_without_a_scheme_matches_its_port_or_else_the_default_ports(settings) -> None:
    checker = policy(settings, origins=[".example.com", "partner.example.org:8443"])
    for origin in ("https://example.com", "http://a.example.com", "https://b.a.example.com:443",
                   "https://partner.example.org:8443", "http://partner.example.org:8443"):
        assert allows(checker, origin), origin
    for origin in ("https://a.example.com:8443", "http://example.com:8000", "https://partner.example.org",
                   "https://partner.example.org:9443", "https://notexample.com"):
        assert not allows(checker, origin), origin


def test_an_origin_that_is_a_websocket_url_comes_from_a_program_and_passes(settings) -> None:
    """Zato's client (ws4py) sends the address it connects to; browsers send their page's origin."""
    checker = policy(settings, https=True)
    assert allows(checker, "ws://127.0.0.1:52233")
    assert allows(checker, "wss://switchboard.example.com")
    assert not allows(checker, "chrome-extension://abcdefghijklmnop")  # a browser's extension page


def test_a_star_allows_every_origin(settings) -> None:
    checker = policy(settings, origins=["*"])
    assert allows(checker, "http://anything.example:1234")
    assert allows(checker, "null")


@hypothesis_settings(max_examples=500, deadline=None)
@given(raw=st.one_of(st.binary(max_size=80),
                     st.from_regex(r"(https?|ws|file)://[\[\]a-z0-9.:@%-]{0,30}", fullmatch=True)))
def test_no_origin_header_makes_the_check_fail_instead_of_answering(raw: bytes | str) -> None:
    checker = OriginPolicy(Accepting.as_asgi(), ["http://127.0.0.1:8000", ".example.com", "localhost:9000"])
    origin = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    assert checker.allows(origin) in (True, False)


def test_the_handshake_is_refused_or_accepted_by_the_asgi_application(settings) -> None:
    checker = policy(settings)

    async def handshake(origin: str) -> bool:
        communicator = WebsocketCommunicator(checker, "/ws/anything", headers=[(b"origin", origin.encode())])
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    assert asyncio.run(handshake("http://127.0.0.1:8000")) is True
    assert asyncio.run(handshake("http://127.0.0.1:6666")) is False
    assert asyncio.run(handshake("http://[")) is False  # refused, not an exception in the server


@pytest.mark.parametrize("origins", [["http://[::1]:8000"], ["[::1]:8000"]])
def test_ipv6_origins_compare_ports_too(settings, origins: list[str]) -> None:
    checker = policy(settings, origins=origins)
    assert allows(checker, "http://[::1]:8000")
    assert not allows(checker, "http://[::1]:8001")
