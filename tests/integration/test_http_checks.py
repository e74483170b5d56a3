"""The WSGI entry point (``config.wsgi``'s ``WSGIApplication``) in this process, called with raw environs.

What it does before a REST channel sees a request: the deployment's host and TLS rules (Django's
middleware, which channel paths skip, applies them to every other path), chunked request bodies,
the server's own environment taken out of the environ, and the configuration version checked
before a process's first request. Real Django, real PostgreSQL; no server process (the
end-to-end versions are in tests/e2e/test_serving.py and tests/e2e/test_stale_config.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.http import HttpRequest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import JWTDefinition
from integration import poller
from integration.channels.http_checks import (
    HOST_CACHE_SIZE,
    HTTPPolicy,
    InheritedEnviron,
    buffer_chunked_body,
)
from integration.channels.rest import WSGIApplication
from integration.models import ConfigVersion, RestChannel
from tests.conftest import basic_header

pytestmark = pytest.mark.django_db

ECHO = """
    from integration.services import Service

    class Echo(Service):
        name = "wsgi.echo"

        def handle(self):
            self.response.payload = {
                "payload": self.request.payload,
                "headers": sorted(self.request.http.headers.keys()),
            }
"""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def environ_for(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
                chunked: bool = False, **extra: Any) -> dict[str, Any]:
    """An environ as a WSGI server builds it (Host 127.0.0.1 unless ``headers`` name another)."""
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"  # and no CONTENT_LENGTH, as servers pass it
    elif body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    for key, value in extra.items():  # None: the server sent no such key
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


def run(app: WSGIApplication, environ: dict[str, Any]) -> Answer:
    """Call the application as a WSGI server does; the whole answer."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = int(status.split()[0]), headers

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Answer(captured["status"], {k.lower(): v for k, v in captured["headers"]}, body)


@pytest.fixture
def keep_connections() -> Iterator[None]:
    """As Django's test client does: requests do not close database connections at their end
    (the test's transaction holds this thread's connection)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def wsgi(keep_connections: None) -> Callable[..., Answer]:
    """``wsgi(method, path, ...)``: one request through a ``WSGIApplication``.

    The application reads its settings when it is built, so it is built for each request:
    settings a test changes apply to the next call.
    """
    return lambda method, path, **options: run(WSGIApplication(WSGIHandler()), environ_for(method, path, **options))


@pytest.fixture
def echo(deploy: Callable[..., Any], make_channel: Callable[..., RestChannel]) -> RestChannel:
    deploy("wsgi_echo.py", ECHO)
    return make_channel("/wsgi/echo", "wsgi.echo")


def assert_error(answer: Answer, status: int, details: str) -> None:
    """The one error shape, with the CID in the body and in ``X-Zato-CID``."""
    assert answer.status == status
    body = answer.json()
    assert body == {"result": "Error", "cid": body["cid"], "details": details}
    assert re.fullmatch(r"[0-9a-f]{24}", body["cid"]) and answer.headers["x-zato-cid"] == body["cid"]


# --- ALLOWED_HOSTS -----------------------------------------------------------------------------------


def test_it_refuses_a_channel_request_for_a_host_the_deployment_does_not_serve(echo, wsgi) -> None:
    refused = wsgi("GET", "/wsgi/echo", headers={"Host": "evil.example"})
    assert_error(refused, 400, "Invalid Host header: 'evil.example' is not served here")
    # The same verdict as Django's own middleware gives the reserved paths.
    assert wsgi("GET", "/healthz", headers={"Host": "evil.example"}).status == 400
    # Allowed hosts (the defaults: 127.0.0.1, localhost, [::1]) on any port, and without a Host header.
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:9", "[::1]:8000", "localhost."):
        assert wsgi("GET", "/wsgi/echo", headers={"Host": host}).status == 200, host
    assert wsgi("GET", "/wsgi/echo", HTTP_HOST=None).status == 200  # HTTP/1.0: SERVER_NAME, as Django does


def test_a_leading_dot_in_allowed_hosts_admits_the_domain_and_its_subdomains(echo, wsgi, settings) -> None:
    settings.ALLOWED_HOSTS = [".example.com"]
    for host, status in (("example.com", 200), ("api.example.com:443", 200), ("example.com.evil.org", 400),
                         ("badexample.com", 400)):
        assert wsgi("GET", "/wsgi/echo", headers={"Host": host}).status == status, host


def test_x_forwarded_host_is_checked_only_when_django_is_told_to_use_it(echo, wsgi, settings) -> None:
    forwarded = {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.example"}
    assert wsgi("GET", "/wsgi/echo", headers=forwarded).status == 200  # not used: Host decides
    settings.USE_X_FORWARDED_HOST = True
    assert wsgi("GET", "/wsgi/echo", headers=forwarded).status == 400


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9.\-]{0,20}(:[0-9]{0,6})?", fullmatch=True),
    st.sampled_from(["localhost", "127.0.0.1", "[::1]", "[::1]:80", "LocalHost.", "127.0.0.1:8000", ".", ""]),
))
def test_the_cached_host_check_agrees_with_django_for_any_host_header(host: str, settings) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", ".example.com"]
    policy = HTTPPolicy()
    request = HttpRequest()
    request.META = {"HTTP_HOST": host, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80"}
    try:
        request.get_host()
        django_allows = True
    except DisallowedHost:
        django_allows = False
    raw = policy.raw_host(request.META)
    assert raw == host
    assert policy.host_allowed(raw) is django_allows
    assert policy.host_allowed(raw) is django_allows  # and again, from the cache


def test_invented_hosts_cannot_grow_the_verdict_cache(settings) -> None:
    policy = HTTPPolicy()
    for n in range(HOST_CACHE_SIZE * 3):
        assert not policy.host_allowed(f"attacker-{n}.example")
    assert policy.host_allowed("localhost")  # validated although the cache is full
    assert len(policy._verdicts) == HOST_CACHE_SIZE


# --- HTTPS: redirect and HSTS ------------------------------------------------------------------------


@pytest.fixture
def https(settings) -> None:
    """What HTTPS=true sets (config/settings.py), TRUST_X_FORWARDED_PROTO following it."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def test_with_https_a_plain_http_channel_call_is_redirected_keeping_its_method(echo, https, wsgi) -> None:
    got = wsgi("GET", "/wsgi/echo?a=1&b=%C3%A9", headers={"Host": "localhost:8000"})
    assert got.status == 301  # as Django redirects the rest of the site
    assert got.headers["location"] == "https://localhost:8000/wsgi/echo?a=1&b=%C3%A9"
    assert re.fullmatch(r"[0-9a-f]{24}", got.headers["x-zato-cid"])
    assert "strict-transport-security" not in got.headers  # HSTS only over HTTPS
    # A 301 makes most clients replay a POST as a GET without its body: 308 keeps both.
    posted = wsgi("POST", "/wsgi/echo", body=b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert posted.status == 308
    assert posted.headers["location"] == "https://127.0.0.1:8000/wsgi/echo"
    # The host is checked first: no redirect to a host the deployment does not serve.
    assert wsgi("GET", "/wsgi/echo", headers={"Host": "evil.example"}).status == 400


def test_with_https_a_call_the_load_balancer_marks_secure_is_served_with_hsts(echo, https, wsgi) -> None:
    hsts = "max-age=31536000; includeSubDomains; preload"
    behind_lb = wsgi("GET", "/wsgi/echo", headers={"X-Forwarded-Proto": "https"})
    assert behind_lb.status == 200
    assert behind_lb.headers["strict-transport-security"] == hsts
    # Django's reading of the header: its first value counts.
    assert wsgi("GET", "/wsgi/echo", headers={"X-Forwarded-Proto": "https, http"}).status == 200
    assert wsgi("GET", "/wsgi/echo", headers={"X-Forwarded-Proto": "http"}).status == 301
    # TLS terminated by the server itself.
    direct = wsgi("GET", "/wsgi/echo", **{"wsgi.url_scheme": "https"})
    assert direct.status == 200 and direct.headers["strict-transport-security"] == hsts
    # Errors over HTTPS carry it too.
    missing = wsgi("GET", "/wsgi/nothing-here", headers={"X-Forwarded-Proto": "https"})
    assert missing.status == 404 and missing.headers["strict-transport-security"] == hsts


def test_x_forwarded_proto_is_ignored_unless_trusted(echo, https, settings, wsgi) -> None:
    settings.SECURE_PROXY_SSL_HEADER = None  # TRUST_X_FORWARDED_PROTO=false
    assert wsgi("GET", "/wsgi/echo", headers={"X-Forwarded-Proto": "https"}).status == 301


def test_without_https_channel_answers_carry_no_hsts_and_are_not_redirected(echo, wsgi) -> None:
    got = wsgi("GET", "/wsgi/echo")
    assert got.status == 200
    assert "strict-transport-security" not in got.headers


# --- Chunked request bodies -------------------------------------------------------------------------


def test_a_chunked_request_body_reaches_the_service(echo, wsgi) -> None:
    got = wsgi("POST", "/wsgi/echo", chunked=True, body=b'{"order": 42, "items": ["a", "b"]}',
               headers={"Content-Type": "application/json"})
    assert got.status == 200, got.body
    assert got.json()["payload"] == {"order": 42, "items": ["a", "b"]}
    assert "content-length" in got.json()["headers"]  # the length it turned out to have


def test_a_chunked_body_over_max_request_body_gets_413_on_channels_and_reserved_paths(echo, wsgi, settings) -> None:
    settings.MAX_REQUEST_BODY = 100
    body = json.dumps({"pad": "x" * 200}).encode()
    for path in ("/wsgi/echo", "/zato/jwt/log-in", "/manage/api/v1/channels/rest/"):
        assert_error(wsgi("POST", path, chunked=True, body=body), 413, "Request body larger than 100 bytes")
    exactly = json.dumps({"pad": "x" * (100 - len('{"pad": ""}'))}).encode()
    assert len(exactly) == 100
    assert wsgi("POST", "/wsgi/echo", chunked=True, body=exactly).status == 200


def test_a_chunked_body_reaches_the_reserved_paths_too(builtins, wsgi) -> None:
    definition = JWTDefinition(name="browsers", username="frontend", ttl=600)
    definition.set_password("jwt-pw-1")
    definition.save()
    login = wsgi("POST", "/zato/jwt/log-in", chunked=True, body=b'{"username": "frontend", "password": "jwt-pw-1"}',
                 headers={"Content-Type": "application/json"})
    assert login.status == 200, login.body
    assert login.json()["token"]


@hypothesis_settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=3000), pieces=st.lists(st.integers(1, 700), max_size=20), limit=st.integers(0, 2500))
def test_buffering_a_chunked_body_keeps_every_byte_or_stops_just_past_the_limit(body: bytes, pieces: list[int],
                                                                               limit: int) -> None:
    class Stream:
        """Hands out the body in the given piece sizes at most (servers return what has arrived)."""

        def __init__(self) -> None:
            self.data, self.sizes, self.read_total = body, list(pieces), 0

        def read(self, size: int) -> bytes:
            assert size > 0
            step = min(size, self.sizes.pop(0) if self.sizes else size)
            chunk, self.data = self.data[:step], self.data[step:]
            self.read_total += len(chunk)
            return chunk

    stream = Stream()
    environ: dict[str, Any] = {"wsgi.input": stream, "HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "5"}
    kept = buffer_chunked_body(environ, limit)
    assert kept is (len(body) <= limit)
    if kept:
        assert environ["wsgi.input"].read() == body
        assert environ["CONTENT_LENGTH"] == str(len(body))  # whatever Content-Length came beside it
    else:
        assert stream.read_total == limit + 1  # never reads more of an oversized body than it must


# --- The server's environment in the environ ---------------------------------------------------------


def test_the_servers_own_environment_is_kept_from_services_and_from_django(echo, keep_connections) -> None:
    """granian copies os.environ into each environ: SECRET_KEY would be in META, HTTP_PROXY a fake header."""
    server_env = {"SECRET_KEY": "server-secret", "DATABASE_URL": "postgres://app:pw@db/app", "HOME": "/srv",
                  "HTTP_PROXY": "http://proxy.internal:3128"}
    app = WSGIApplication(WSGIHandler())
    app.inherited = InheritedEnviron(server_env)  # built from os.environ in production
    # A channel: no Proxy header the caller did not send.
    environ = {**server_env, **environ_for("GET", "/wsgi/echo")}  # what granian hands the application
    answer = run(app, environ)
    assert answer.status == 200
    assert "proxy" not in answer.json()["headers"]
    # Django's full stack (admin, management API): none of the server's variables in META.
    environ = {**server_env, **environ_for("GET", "/healthz")}
    assert run(app, environ).status == 200
    assert not environ.keys() & server_env.keys()
    # Built from this process's real environment, it finds what a granian worker would inherit.
    assert set(WSGIApplication(WSGIHandler()).inherited.plain) >= {"PATH"} & os.environ.keys()


def test_a_header_named_like_a_server_variable_is_kept_when_the_client_sent_it() -> None:
    strip = InheritedEnviron({"HTTP_PROXY": "http://proxy.internal:3128", "HOME": "/root", "PATH_INFO": "/x"})
    environ = {"HTTP_PROXY": "http://client-said", "HOME": "/root", "PATH_INFO": "/real"}
    strip.strip(environ)
    # The request's own values stay: a Proxy header the caller sent, and the CGI keys the server set.
    assert environ == {"HTTP_PROXY": "http://client-said", "PATH_INFO": "/real"}


# --- The configuration version before a process's first request ---------------------------------------


def test_a_process_checks_the_configuration_version_before_its_first_request(
    echo: RestChannel, basic_auth: Callable[..., Any], wsgi: Callable[..., Answer], monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = basic_auth("partner", "partner", "partner-pw-1")
    monkeypatch.setattr(poller, "_poller_pid", os.getpid())  # this process has made its first check
    assert wsgi("GET", "/wsgi/echo").status == 200
    # Another process secures the channel: the row and the version change, this process is not told.
    RestChannel.objects.filter(pk=echo.pk).update(security=definition)
    ConfigVersion.bump()
    # Until its poller's next tick, a process that has served before answers from its snapshot
    # (the poller, every CONFIG_POLL_INTERVAL, bounds that) ...
    assert wsgi("GET", "/wsgi/echo").status == 200
    # ... but a new process (forked after start, or one whose snapshot was built at import some
    # time ago) checks the version before it answers anything.
    monkeypatch.setattr(poller, "_poller_pid", None)
    assert wsgi("GET", "/wsgi/echo").status == 401
    assert poller._poller_pid == os.getpid()
    assert wsgi("GET", "/wsgi/echo", headers={"Authorization": basic_header("partner", "partner-pw-1")}).status == 200
