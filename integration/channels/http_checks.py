"""What the web server's WSGI entry point checks before a REST channel sees a request.

REST channel paths skip Django's middleware (``WSGIApplication`` in ``rest.py``): the
session, CSRF and auth middleware cost more than the channel itself and mean nothing to it.
But two of the skipped checks belong to the deployment, not to the admin, and apply here too:

* ``ALLOWED_HOSTS``: a request naming a host the deployment does not serve gets 400, as
  ``/healthz`` does (Django's ``HttpRequest.get_host``). Host-header poisoning reaches
  services through absolute URLs they build from the request.
* HTTPS (``SECURE_SSL_REDIRECT``, ``SECURE_PROXY_SSL_HEADER`` from ``TRUST_X_FORWARDED_PROTO``,
  ``SECURE_HSTS_*``): a plain-HTTP request is redirected to HTTPS and secure responses carry
  ``Strict-Transport-Security``, as Django's ``SecurityMiddleware`` does for the other paths.

``HTTPPolicy`` reads those settings once, when the WSGI application is built. Per request it
costs a dictionary lookup for the host (each distinct Host value is validated with Django's
own functions the first time and the verdict is kept, up to ``HOST_CACHE_SIZE`` values, so
invented hosts cannot grow it) and, only when HTTPS is on, one header lookup and one header.

Two fixes of the WSGI environ live here too, because they apply to every path:

* ``buffer_chunked_body``: a request sent with ``Transfer-Encoding: chunked`` has no
  ``Content-Length``, and Django's ``WSGIRequest`` reads ``CONTENT_LENGTH`` bytes, that is
  none: the body was silently dropped. It is read here (bounded by ``MAX_REQUEST_BODY``) and
  handed on with its length.
* ``InheritedEnviron``: granian's WSGI interface starts every request's environ from a copy
  of the server's ``os.environ`` (CGI style), so ``SECRET_KEY``, ``DATABASE_URL`` and the
  rest would sit in ``request.META``, and an ``HTTP_PROXY`` variable would look to services
  like a ``Proxy`` header the caller sent. Variables named like headers are removed from
  every request; the others from requests to the reserved paths, where Django's full stack
  (error reports, debug pages, third-party code) may show ``META``. A REST channel reads only
  headers and a few CGI keys from it, and is spared the cost.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

security_logger = logging.getLogger("django.security.DisallowedHost")

#: Distinct Host values whose verdict is remembered; others are validated on every request.
HOST_CACHE_SIZE = 256
_READ_SIZE = 64 * 1024

# Keys a WSGI server sets from the request itself: never stripped, even if the server's own
# environment happens to define a variable of that name.
_REQUEST_KEYS = frozenset({
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE", "GATEWAY_INTERFACE",
    "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "RAW_URI",
})


class HTTPPolicy:
    """The deployment's host and TLS rules, compiled from settings once."""

    def __init__(self) -> None:
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]  # what Django's get_host allows then
        self.allowed_hosts = allowed
        self.use_forwarded_host = bool(settings.USE_X_FORWARDED_HOST)
        self._verdicts: dict[str, bool] = {}
        proxy_header = settings.SECURE_PROXY_SSL_HEADER
        self.proxy_header: tuple[str, str] | None = tuple(proxy_header) if proxy_header else None  # type: ignore[assignment]
        self.redirect = bool(settings.SECURE_SSL_REDIRECT)
        self.redirect_host: str | None = settings.SECURE_SSL_HOST or None
        self.redirect_exempt = [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]
        hsts = None
        if settings.SECURE_HSTS_SECONDS:
            hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                hsts += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                hsts += "; preload"
        self.hsts = hsts
        # The scheme matters only for the redirect and HSTS; without HTTPS nothing looks at it.
        self.needs_scheme = self.redirect or hsts is not None

    # --- Host -----------------------------------------------------------------------------

    def raw_host(self, environ: Mapping[str, Any]) -> str:
        """The host the request names, found as Django's ``HttpRequest._get_raw_host`` finds it."""
        if self.use_forwarded_host and "HTTP_X_FORWARDED_HOST" in environ:
            return environ["HTTP_X_FORWARDED_HOST"]
        if "HTTP_HOST" in environ:
            return environ["HTTP_HOST"]
        host = environ.get("SERVER_NAME", "")
        port = str(environ.get("SERVER_PORT", ""))
        if port != ("443" if self.is_secure(environ) else "80"):
            host = f"{host}:{port}"
        return host

    def host_allowed(self, host: str) -> bool:
        """Whether ``ALLOWED_HOSTS`` admits this Host value (Django's rules: ports ignored, ``.`` = subdomains)."""
        verdict = self._verdicts.get(host)
        if verdict is None:
            domain, _port = split_domain_port(host)
            verdict = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._verdicts) < HOST_CACHE_SIZE:
                self._verdicts[host] = verdict
        return verdict

    # --- TLS ------------------------------------------------------------------------------

    def is_secure(self, environ: Mapping[str, Any]) -> bool:
        """Whether the client reached us over HTTPS, as ``HttpRequest.is_secure`` decides it."""
        if self.proxy_header is not None:
            header, secure_value = self.proxy_header
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def redirect_target(self, environ: Mapping[str, Any], host: str, full_path: str) -> str | None:
        """The HTTPS URL to send a plain-HTTP request to, or None when it may be served as it is."""
        if not self.redirect or self.is_secure(environ):
            return None
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).lstrip("/")
        if any(pattern.search(path) for pattern in self.redirect_exempt):
            return None
        return f"https://{self.redirect_host or host}{full_path}"


def is_chunked(environ: Mapping[str, Any]) -> bool:
    """Whether the request body came with ``Transfer-Encoding: chunked`` (so without a length)."""
    encoding = environ.get("HTTP_TRANSFER_ENCODING")
    return encoding is not None and "chunked" in encoding.lower()


def buffer_chunked_body(environ: MutableMapping[str, Any], limit: int) -> bool:
    """Read a chunked body (at most ``limit`` bytes) and give it to Django with a ``CONTENT_LENGTH``.

    The server has already removed the chunk framing; what ``wsgi.input`` yields is the body.
    Returns False, having read ``limit`` + 1 bytes and no more, when the body is larger: the
    caller answers 413 without reading the rest. Any ``Content-Length`` sent beside
    ``Transfer-Encoding: chunked`` is ignored, as HTTP/1.1 requires.
    """
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_SIZE, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return False
    body = b"".join(parts)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return True


class InheritedEnviron:
    """The server's own environment variables, to be taken out of each request's environ.

    Built from ``os.environ`` when the application is built, which is what granian copies
    into every request. Plain variables are removed whatever their value. A variable named
    like a header (``HTTP_PROXY``) is removed only while it still holds the server's value:
    when the request sent that header, the request's value replaced it and stays.
    Under a server that does not copy its environment (gunicorn) this finds nothing to remove.
    """

    def __init__(self, environment: Mapping[str, str] | None = None) -> None:
        environment = os.environ if environment is None else environment
        self.plain = tuple(
            key for key in environment
            if key not in _REQUEST_KEYS and not key.startswith(("HTTP_", "wsgi."))
        )
        self.headers = tuple((key, value) for key, value in environment.items() if key.startswith("HTTP_"))

    def strip_headers(self, environ: MutableMapping[str, Any]) -> None:
        """Only the variables that would pass for request headers (usually none: no cost)."""
        for key, value in self.headers:
            if environ.get(key) == value:
                del environ[key]

    def strip(self, environ: MutableMapping[str, Any]) -> None:
        """All of them (a few microseconds: for paths that hand ``META`` to Django's full stack)."""
        pop = environ.pop
        for key in self.plain:
            pop(key, None)
        self.strip_headers(environ)
