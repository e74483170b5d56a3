"""A small HTTP client for the end-to-end tests: one connection per request, every status returned.

``urllib`` raises on 4xx/5xx; the tests want to look at those answers, so ``request``
returns a ``Reply`` whatever the status, and raises only when there is no answer at all
(connection refused, reset, timeout).
"""

from __future__ import annotations

import base64
import http.client
import json as jsonlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (names lower-cased) and the body as bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The Authorization header for HTTP Basic."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """Send one request on a fresh connection (``Connection: close``) and read the whole answer."""
    parts = urlsplit(url)
    sent_headers = {"Connection": "close", **(headers or {})}
    if json is not None:
        body = jsonlib.dumps(json).encode()
        sent_headers.setdefault("Content-Type", "application/json")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=sent_headers)
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def get(url: str, **kwargs: Any) -> Reply:
    return request("GET", url, **kwargs)


def try_get(url: str, **kwargs: Any) -> Reply | None:
    """GET, or None when nothing answers yet (connection refused/reset, timeout)."""
    try:
        return request("GET", url, **kwargs)
    except (OSError, http.client.HTTPException):
        return None
