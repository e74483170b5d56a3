"""An OAuth 2.0 token server for the client-credentials grant, built on authlib.

authlib's framework-agnostic ``AuthorizationServer`` does the protocol: the
``client_credentials`` grant (RFC 6749 §4.4), client authentication by ``client_secret_basic``
or ``client_secret_post`` (§2.3.1), error answers (§5.2), introspection (RFC 7662) and
revocation (RFC 7009). This module adds the storage (in memory), the per-client rules and the
things only a test server needs. What it serves on the public listener:

* ``POST /token``: form ``grant_type=client_credentials``, optional ``scope`` and any extra
  parameters (``audience``, ``resource``...), which are stored with the token and shown by
  introspection (``aud``). Answers ``{"access_token", "token_type": "Bearer", "expires_in",
  "scope"}`` with ``Cache-Control: no-store``. Tokens are opaque random strings and expire
  for real after the client's ``expires_in`` seconds. Rules beyond authlib's defaults, each
  as a real server has it: a client may only ask for scopes it is allowed (else
  ``invalid_scope``; no ``scope`` at all grants every allowed scope); a client may be limited
  to one authentication method (``auth_methods``); credentials sent both ways at once are
  ``invalid_request`` (§2.3: one method per request); a body that is not form-encoded, or a
  repeated parameter, is ``invalid_request`` (§3.2).
* ``POST /introspect`` (RFC 7662): for clients marked ``may_introspect`` (the backends), or a
  client asking about its own tokens; also served on the internal listener for the backends.
* ``POST /revoke`` (RFC 7009), and ``GET /.well-known/oauth-authorization-server`` (RFC 8414).

The control API adds: ``clients`` (POST: register a client), ``stats`` (token requests and
tokens issued per client, introspections), ``token-requests`` (what each token request
carried: headers, form, which client, how it authenticated, the answer), ``revoke`` (a token,
a client's tokens, or all), ``expire`` (make tokens expire now) and ``tokens``. Token
requests are counted as they arrive, before the switches: one that the ``fail`` switch
answered 500 still counts, as the client did send it.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from tests.servers.loopback import App, Request, Response, headers_dict, json_response

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
SINGLE_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret", "audience", "resource")


@dataclass
class Client(ClientMixin):
    """A registered client; ``expires_in`` is the lifetime of its tokens in seconds."""

    client_id: str
    client_secret: str
    scopes: list[str] = field(default_factory=list)
    expires_in: int = 3600
    auth_methods: list[str] = field(default_factory=lambda: list(AUTH_METHODS))
    may_introspect: bool = False

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(self.client_secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods if endpoint == "token" else method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str | None) -> str:
        # Reached only after _Grant.validate_requested_scope, so ``scope`` is allowed here.
        return " ".join(scope_to_list(scope) or self.scopes)


@dataclass
class Token(TokenMixin):
    """An issued access token and what it was issued for."""

    access_token: str
    client_id: str
    scope: str
    issued_at: float
    expires_in: float
    audience: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> float:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked


class _FormRequest(OAuth2Request):
    """authlib's request built from a loopback ``Request`` with a form body (one value per name)."""

    def __init__(self, request: Request) -> None:
        # authlib refuses plain-HTTP URIs unless they are loopback ones; this server only ever
        # listens on 127.0.0.1, so that is what the URI says whatever Host the client sent.
        super().__init__(request.method, f"{request.scheme}://127.0.0.1{request.path}", headers=request.headers)
        try:
            lists = request.form() if request.content_type == "application/x-www-form-urlencoded" else {}
        except ValueError:
            lists = {}
        self.lists = lists
        self._form = {name: values[-1] for name, values in lists.items()}
        self.payload = BasicOAuth2Payload(self._form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _Grant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        requested = scope_to_list(self.request.payload.scope) or []
        refused = sorted(set(requested) - set(self.client.scopes))
        if refused:
            raise InvalidScopeError(description=f"The client may not ask for the scope {' '.join(refused)}")


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def __init__(self, server: _AuthServer) -> None:
        super().__init__(server)
        self.state = server.state

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        with self.state.lock:
            self.state.introspections += 1
            return self.state.tokens.get(token_string)

    def check_permission(self, token: Token, client: Client, request: Any) -> bool:
        return client.may_introspect or token.client_id == client.client_id

    def introspect_token(self, token: Token) -> dict[str, Any]:
        # Whole seconds, as RFC 7662 wants: rounded outwards, so that ``exp`` is never before the
        # moment the token really stops working.
        return {"active": True, "client_id": token.client_id, "sub": token.client_id, "scope": token.scope,
                "token_type": "Bearer", "iat": math.floor(token.issued_at),
                "exp": math.ceil(token.issued_at + token.expires_in),
                "aud": token.audience, "iss": self.state.issuer}


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def __init__(self, server: _AuthServer) -> None:
        super().__init__(server)
        self.state = server.state

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.state.tokens.get(token_string)

    def revoke_token(self, token: Token, request: Any) -> None:
        token.revoked = True


class _State:
    """Clients, tokens and counters, behind one lock (the server answers from many threads)."""

    def __init__(self, clients: list[Client], issuer: str) -> None:
        self.lock = threading.RLock()
        self.initial = [Client(**asdict(client)) for client in clients]
        self.issuer = issuer
        self.clients: dict[str, Client] = {}
        self.tokens: dict[str, Token] = {}
        self.token_requests: dict[str, int] = {}
        self.tokens_issued: dict[str, int] = {}
        self.introspections = 0
        self.log: list[dict[str, Any]] = []
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clients = {client.client_id: Client(**asdict(client)) for client in self.initial}
            self.tokens.clear()
            self.token_requests.clear()
            self.tokens_issued.clear()
            self.introspections = 0
            self.log.clear()


class _AuthServer(AuthorizationServer):
    """authlib's server with its storage and framework hooks filled in."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state
        self.register_grant(_Grant)
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: client.expires_in,
        ))
        self.register_endpoint(_Introspection(self))
        self.register_endpoint(_Revocation(self))

    def query_client(self, client_id: str) -> Client | None:
        with self.state.lock:
            return self.state.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: _FormRequest) -> None:
        form = request.form
        extra = {name: value for name, value in form.items()
                 if name not in ("grant_type", "scope", "client_id", "client_secret")}
        record = Token(token["access_token"], request.client.client_id, token.get("scope", ""), time.time(),
                       token["expires_in"], form.get("audience") or form.get("resource"), extra)
        with self.state.lock:
            self.state.tokens[record.access_token] = record
            self.state.tokens_issued[record.client_id] = self.state.tokens_issued.get(record.client_id, 0) + 1

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no listeners: the control API reads the state directly

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _FormRequest(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        return json_response(status, body, list(headers))


def _presented_client(request: Request) -> tuple[str, str | None]:
    """Which client a token request names, and how it authenticates (None: no credentials)."""
    basic_id, _ = extract_basic_authorization(request.headers)
    if basic_id:
        return basic_id, "client_secret_basic"
    try:
        form = request.form() if request.content_type == "application/x-www-form-urlencoded" else {}
    except ValueError:
        form = {}
    client_id = (form.get("client_id") or [""])[-1]
    return client_id, ("client_secret_post" if form.get("client_secret") else None)


class OAuthApp(App):
    """The token server. ``config``: ``issuer``, ``clients`` (a list of ``Client`` fields)."""

    kind = "oauth"

    def __init__(self, config: dict[str, Any]) -> None:
        clients = [Client(**client) for client in config.get("clients", [])]
        self.state = _State(clients, config.get("issuer", "https://oauth.loopback.test"))
        self.server = _AuthServer(self.state)

    # --- Public endpoints -----------------------------------------------------------------------

    def observe(self, request: Request) -> dict[str, Any] | None:
        if request.path != "/token":
            return None
        client_id, method = _presented_client(request)
        entry = {"client_id": client_id, "auth_method": method, "headers": headers_dict(request.headers),
                 "form": _safe_form(request), "content_type": request.content_type, "time": time.time(),
                 "status": None, "error": None}
        with self.state.lock:
            self.state.token_requests[client_id] = self.state.token_requests.get(client_id, 0) + 1
            self.state.log.append(entry)
            entry["seq"] = len(self.state.log)
        request.oauth_log_entry = entry  # type: ignore[attr-defined]  # handle() fills in the answer
        return {"client_id": client_id, "auth_method": method}

    def handle(self, request: Request) -> Response:
        if request.path == "/token":
            response = self._token(request) if request.method == "POST" else _method_not_allowed()
            entry = getattr(request, "oauth_log_entry", None)
            if entry is not None:
                entry["status"] = response.status
                if response.status != 200:
                    entry["error"] = _json_field(response, "error")
            return response
        return self._shared(request)

    def handle_internal(self, request: Request) -> Response:
        return self._shared(request)

    def _shared(self, request: Request) -> Response:
        if request.path in ("/introspect", "/revoke"):
            if request.method != "POST":
                return _method_not_allowed()
            name = "introspection" if request.path == "/introspect" else "revocation"
            return self.server.create_endpoint_response(name, _FormRequest(request))
        if request.path == "/.well-known/oauth-authorization-server" and request.method in ("GET", "HEAD"):
            return json_response(200, self._metadata(request.base_url))
        return json_response(404, {"error": "not_found"})

    def _token(self, request: Request) -> Response:
        oauth_request = _FormRequest(request)
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(oauth_request, InvalidRequestError(
                "The token request must be application/x-www-form-urlencoded"))
        repeated = [name for name in SINGLE_PARAMETERS if len(oauth_request.lists.get(name, [])) > 1]
        if repeated:
            return self._error(oauth_request, InvalidRequestError(f"Repeated parameter {repeated[0]}"))
        basic_id, _ = extract_basic_authorization(request.headers)
        if basic_id and "client_secret" in oauth_request.form:
            return self._error(oauth_request, InvalidRequestError(
                "The client used more than one authentication method"))
        return self.server.create_token_response(oauth_request)

    def _error(self, request: OAuth2Request, error: Exception) -> Response:
        return self.server.handle_error_response(request, error)

    def _metadata(self, base_url: str) -> dict[str, Any]:
        with self.state.lock:
            scopes = sorted({scope for client in self.state.clients.values() for scope in client.scopes})
        return {
            "issuer": self.state.issuer,
            "token_endpoint": f"{base_url}/token",
            "introspection_endpoint": f"{base_url}/introspect",
            "revocation_endpoint": f"{base_url}/revoke",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": scopes,
        }

    def reset(self) -> None:
        self.state.reset()

    # --- The control API ------------------------------------------------------------------------

    def control(self, request: Request, action: str) -> Response | None:
        data = request.json() if request.body else {}
        state = self.state
        if action == "clients" and request.method == "POST":
            client = Client(**data)
            with state.lock:
                state.clients[client.client_id] = client
            return json_response(201, asdict(client))
        if action == "stats":
            with state.lock:
                return json_response(200, {
                    "token_requests": dict(state.token_requests),
                    "tokens_issued": dict(state.tokens_issued),
                    "introspections": state.introspections,
                    "active_tokens": sum(1 for token in state.tokens.values()
                                         if not token.is_expired() and not token.is_revoked()),
                })
        if action == "token-requests":
            wanted = request.arg("client_id")
            with state.lock:
                return json_response(200, [entry for entry in state.log
                                           if wanted is None or entry["client_id"] == wanted])
        if action == "tokens":
            with state.lock:
                return json_response(200, [{**asdict(token), "expired": token.is_expired()}
                                           for token in state.tokens.values()])
        if action in ("revoke", "expire") and request.method == "POST":
            return json_response(200, {"changed": self._change_tokens(action, data)})
        return None

    def _change_tokens(self, action: str, data: dict[str, Any]) -> int:
        """Revoke or expire the token ``data["token"]``, a client's (``client_id``), or every one (``all``)."""
        with self.state.lock:
            chosen = [token for token in self.state.tokens.values()
                      if data.get("all") or token.access_token == data.get("token")
                      or (data.get("client_id") and token.client_id == data.get("client_id"))]
            for token in chosen:
                if action == "revoke":
                    token.revoked = True
                else:
                    token.expires_in = max(0.0, time.time() - token.issued_at)
            return len(chosen)


def _safe_form(request: Request) -> dict[str, str] | None:
    """The form as the test reads it back (last value of each name); None when not a form."""
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        return {name: values[-1] for name, values in request.form().items()}
    except ValueError:
        return None


def _json_field(response: Response, name: str) -> Any:
    try:
        return json.loads(response.body).get(name)
    except (ValueError, AttributeError):
        return None


def _method_not_allowed() -> Response:
    return json_response(405, {"error": "invalid_request", "error_description": "Use POST"}, [("Allow", "POST")])
