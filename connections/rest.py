"""Outgoing REST connections: ``self.out.rest[name].conn`` (and Zato's ``self.outgoing.plain_http[name].conn``).

Service code, as in Zato::

    conn = self.out.rest["REST Server"].conn
    response = conn.get(self.cid, {"cust_id": 123, "detail": "full"})
    response = conn.post(self.cid, {"name": "Delta"}, {"cust_id": 124})
    response.status_code, response.headers, response.data, response.text

``params`` first fill the placeholders of the connection's URL path (``/customers/{cust_id}``),
URL-quoted; the rest go to the query string. The CID travels in ``X-Zato-CID``. With the JSON
data format a dict or list body is sent as JSON and a 2xx answer must be JSON (``.data`` is
then the parsed value; a non-2xx answer that is not JSON has ``.data`` None and its text in
``.text``); with raw, bodies go as given and ``.data`` is the text. Any status comes back as
a response, as in Zato; failures to get one are ``connections.http_common`` errors naming the
connection. Security is the connection's: Basic (a precomputed header), an API key header, or
OAuth client credentials (``accounts.oauth.BearerAuth``: cached tokens, one retry after a 401).

Each process keeps one ``requests.Session`` per connection, with a pool of ``pool_size``
sockets reused across calls; a changed row gets a new connection (and pool), the old one is
closed when no snapshot uses it any more. Sessions ignore the environment (proxies, .netrc)
and keep no cookies: everything a call sends comes from the connection's row and the call.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from accounts import oauth
from connections.base import Connection, PingResult
from connections.http_common import (
    InvalidCall,
    InvalidResponse,
    OutgoingHttpError,
    parse_header_lines,
    pooled_session,
    translate,
    verify_setting,
)
from integration.cid import new_cid

if TYPE_CHECKING:
    from connections.models import OutgoingRest

KIND = "rest"
ALIASES = ("plain_http",)
LABEL = "REST"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
JSON = "json"


def compile_path(url_path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``/a/{x}/b`` -> literals ``("/a/", "/b")`` and names ``("x",)``: literal, name, literal, ..."""
    literals, names, last = [], [], 0
    for match in PLACEHOLDER.finditer(url_path):
        literals.append(url_path[last:match.start()])
        names.append(match.group(1))
        last = match.end()
    literals.append(url_path[last:])
    return tuple(literals), tuple(names)


def fill_path(literals: tuple[str, ...], names: tuple[str, ...], params: Mapping[str, Any] | None
              ) -> tuple[str, dict[str, Any]]:
    """The path with each placeholder filled (URL-quoted) and the parameters left over; ``KeyError`` if one lacks."""
    left = dict(params) if params else {}
    if not names:
        return literals[0], left
    parts = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        value = left.pop(name)
        parts.append(quote(value if isinstance(value, str) else str(value), safe=""))
        parts.append(literal)
    return "".join(parts), left


class RestResponse:
    """What a call returns: ``status_code`` (also ``status``), ``headers``, ``data``, ``text``, ``content``.

    ``elapsed_ms`` is the round trip, ``cid`` the one sent; other attributes of the underlying
    ``requests.Response`` (``reason``, ``cookies``, ``history``) are reachable as Zato code expects.
    """

    __slots__ = ("cid", "content", "data", "elapsed_ms", "headers", "raw", "status_code", "url")

    def __init__(self, raw: requests.Response, data: Any, cid: str, elapsed_ms: float) -> None:
        self.raw = raw
        self.status_code = raw.status_code
        self.headers = raw.headers
        self.content = raw.content
        self.url = raw.url
        self.data = data
        self.cid = cid
        self.elapsed_ms = elapsed_ms

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 400

    @property
    def text(self) -> str:
        return self.raw.text

    def json(self) -> Any:
        return self.data if self.data is not None else self.raw.json()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def __repr__(self) -> str:
        return f"<RestResponse {self.status_code} from {self.url.split('?', 1)[0]}>"


@dataclass(frozen=True)
class RestSettings:
    """One row's settings, decrypted and parsed; built without network."""

    name: str
    address: str
    url_path: str = ""
    data_format: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    verify: bool | str = True
    pool_size: int = 20
    ping_method: str = "HEAD"
    ping_path: str = "/"
    oauth_config: oauth.ClientConfig | None = None

    def __repr__(self) -> str:  # headers may hold credentials
        return f"RestSettings(name={self.name!r}, address={self.address!r}, url_path={self.url_path!r})"

    @classmethod
    def from_row(cls, row: OutgoingRest) -> RestSettings:
        headers = parse_header_lines(row.default_headers)
        verify = verify_setting(row.tls_verify, row.tls_ca_cert)
        oauth_config = None
        auth_type = row.auth_type
        if auth_type == "basic":
            pair = f"{row.username}:{row.get_password()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif auth_type == "apikey":
            headers[row.api_key_header or "X-API-Key"] = row.get_password()
        elif auth_type == "oauth" and row.oauth is not None:
            oauth_config = oauth.ClientConfig.from_definition(row.oauth, row.scope_list or None)
        return cls(row.name, row.address.rstrip("/"), row.url_path, row.data_format, headers, float(row.timeout),
                   verify, int(row.pool_size), row.ping_method or "HEAD", row.ping_path or "/", oauth_config)


class RestConnection(Connection):
    """``self.out.rest[name]``; ``.conn`` is the connection itself, for Zato's spelling."""

    kind = KIND

    def __init__(self, settings: RestSettings, *, is_active: bool = True) -> None:
        self.name = settings.name
        self.settings = settings
        self.is_active = is_active
        self._literals, self._names = compile_path(settings.url_path)
        self._base = settings.address
        auth = oauth.BearerAuth(oauth.token_source(settings.oauth_config)) if settings.oauth_config else None
        session = pooled_session(settings.pool_size, settings.verify, auth)
        session.headers.clear()
        session.headers.update({"User-Agent": "Switchboard", "Accept-Encoding": "gzip, deflate"})
        if settings.data_format == JSON:
            session.headers["Accept"] = "application/json"
        session.headers.update(settings.headers)
        self.session = session
        # What ``Session.request`` would merge into every call, merged once: calls prepare their
        # request themselves and go straight to ``Session.send`` (the same adapter, pool, auth
        # hooks and cookie policy), skipping the per-call merging of session settings.
        self._headers = dict(session.headers)
        self._send_options = {"timeout": settings.timeout, "allow_redirects": False, "verify": settings.verify,
                              "stream": False, "cert": None, "proxies": {}}

    @classmethod
    def from_row(cls, row: OutgoingRest) -> RestConnection:
        return cls(RestSettings.from_row(row), is_active=row.is_active)

    @property
    def conn(self) -> RestConnection:
        return self

    # --- Calls ----------------------------------------------------------------------------------

    def get(self, cid: str, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
            ) -> RestResponse:
        return self.request("GET", cid, None, params, headers)

    def post(self, cid: str, data: Any = "", params: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None) -> RestResponse:
        return self.request("POST", cid, data, params, headers)

    send = post

    def put(self, cid: str, data: Any = "", params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> RestResponse:
        return self.request("PUT", cid, data, params, headers)

    def patch(self, cid: str, data: Any = "", params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> RestResponse:
        return self.request("PATCH", cid, data, params, headers)

    def delete(self, cid: str, data: Any = "", params: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None) -> RestResponse:
        return self.request("DELETE", cid, data, params, headers)

    def options(self, cid: str, data: Any = "", params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> RestResponse:
        return self.request("OPTIONS", cid, data, params, headers)

    def request(self, method: str, cid: str, data: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> RestResponse:
        """One call: the URL from ``params``, the body from ``data``; a ``RestResponse`` or an error naming us."""
        url = self._url(params, cid)
        body, content_type = self._body(data)
        sent = CaseInsensitiveDict(self._headers)
        sent["X-Zato-CID"] = str(cid)
        if content_type is not None:
            sent["Content-Type"] = content_type
        if headers:
            sent.update(headers)
            for name in [name for name, value in sent.items() if value is None]:
                del sent[name]  # None removes a default header, as requests' merging does
        started = time.perf_counter()
        try:
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method, url=url, headers=sent, data=body, auth=self.session.auth,
                             cookies=self.session.cookies)  # the session's jar: empty, its policy keeps none
            raw = self.session.send(prepared, **self._send_options)
        except requests.RequestException as exc:
            raise translate(exc, LABEL, self.name, url.split("?", 1)[0], self.settings.timeout) from None
        elapsed = (time.perf_counter() - started) * 1000
        return RestResponse(raw, self._data(raw, url), cid, elapsed)

    def _url(self, params: Mapping[str, Any] | None, cid: str) -> str:
        if params is not None and not isinstance(params, Mapping):
            raise InvalidCall(LABEL, self.name, f"params must be a dict, not {type(params).__name__}")
        try:
            path, left = fill_path(self._literals, self._names, params)
        except KeyError as exc:
            raise InvalidCall(LABEL, self.name, f"CID:`{cid}` no value for the URL path parameter {exc.args[0]!r} "
                              f"of {self.settings.url_path}") from None
        url = self._base + path
        if left:
            url += ("&" if "?" in url else "?") + urlencode(left, doseq=True)
        return url

    def _body(self, data: Any) -> tuple[bytes | None, str | None]:
        if data is None or data == "":
            return None, None
        if isinstance(data, bytes):
            return data, None
        if isinstance(data, str):
            return data.encode(), None
        if self.settings.data_format == JSON:
            try:
                return json.dumps(data, separators=(",", ":"), default=str).encode(), "application/json"
            except (TypeError, ValueError) as exc:
                raise InvalidCall(LABEL, self.name, f"the body cannot be sent as JSON ({exc})") from None
        raise InvalidCall(LABEL, self.name, f"a raw connection sends str or bytes, not {type(data).__name__}")

    def _data(self, raw: requests.Response, url: str) -> Any:
        content = raw.content
        if self.settings.data_format != JSON:
            return raw.text
        content_type = raw.headers.get("Content-Type", "")
        if not content:
            return None
        if not 200 <= raw.status_code < 300 and "json" not in content_type:
            return None  # an error page: the status and .text say it
        try:
            return json.loads(content)
        except ValueError:
            if not 200 <= raw.status_code < 300:
                return None
            kind = content_type.split(";", 1)[0].strip() or "no content type"
            raise InvalidResponse(LABEL, self.name, f"the answer ({raw.status_code}, {kind}) is not JSON",
                                  url.split("?", 1)[0]) from None

    # --- Ping and lifecycle -----------------------------------------------------------------------

    def ping(self) -> PingResult:
        """Send ``ping_method`` to the address + ``ping_path``: OK when the server answers without 401/403/5xx."""
        url = self._base + "/" + self.settings.ping_path.lstrip("/")
        method = self.settings.ping_method.upper()
        started = time.perf_counter()
        try:
            raw = self.session.request(method, url, headers={"X-Zato-CID": new_cid()},
                                       timeout=self.settings.timeout, allow_redirects=False)
        except OutgoingHttpError as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, exc.reason)
        except oauth.TokenUnavailable as exc:
            return PingResult(False, (time.perf_counter() - started) * 1000, str(exc.details))
        except requests.RequestException as exc:
            error = translate(exc, LABEL, self.name, url, self.settings.timeout)
            return PingResult(False, (time.perf_counter() - started) * 1000, f"{method} {url}: {error.reason}")
        ms = (time.perf_counter() - started) * 1000
        status = raw.status_code
        ok = status not in (401, 403) and status < 500
        what = {401: ", credentials refused", 403: ", access forbidden"}.get(status, "")
        return PingResult(ok, ms, f"{method} {url} answered {status} {raw.reason or ''}".rstrip() + what)

    def close(self) -> None:
        self.session.close()


def ping_row(row: OutgoingRest) -> PingResult:
    """Ping a row as saved (the admin and API ping button), with a connection made for it and closed after."""
    if urlsplit(row.address).scheme not in ("http", "https"):
        return PingResult(False, 0.0, "the address is not an http:// or https:// URL")
    connection = RestConnection.from_row(row)
    try:
        return connection.ping()
    finally:
        connection.close()
