"""How the REST backend and the FHIR server check callers: none, HTTP Basic, an API key, or OAuth.

OAuth tokens are opaque, so the backends validate them as a real resource server does with
opaque tokens: by asking the token server (RFC 7662 introspection, authenticated with the
backend's own client credentials). The validation rules are authlib's
``IntrospectTokenValidator`` (inactive token: ``invalid_token``; missing scope:
``insufficient_scope``), with an audience check added. The introspection call goes to the
token server's *internal* listener, which the test switches never touch: a test can take the
token endpoint down or make it slow while the backends keep validating the tokens already
issued, as with a real deployment where resource servers reach the introspection endpoint
on their own network path. If introspection fails anyway (the token server process was
killed), the backend answers 503: it cannot tell a good token from a bad one.

Answers follow RFC 6750 §3: a request without credentials gets 401 with a bare challenge
(``WWW-Authenticate: Bearer realm="..."``, no error code, as §3.1 asks); an unknown, expired
or revoked token gets 401 ``Bearer error="invalid_token"``; a token without the scope an
endpoint needs gets 403 ``Bearer error="insufficient_scope"``. Basic and API-key failures are
401 with a ``Basic`` / ``ApiKey`` challenge (a 401 must carry one).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
from authlib.oauth2.rfc7662 import IntrospectTokenValidator

INTROSPECTION_TIMEOUT = (2.0, 5.0)  # seconds: connect, read


@dataclass(frozen=True)
class Security:
    """A backend's security settings, as the JSON config of the server process carries them."""

    mode: str = "none"  # none | basic | apikey | oauth
    realm: str = "loopback"
    username: str = ""
    password: str = ""
    api_key_header: str = "X-API-Key"
    api_key: str = ""
    introspection_url: str = ""
    introspection_client_id: str = ""
    introspection_client_secret: str = ""
    audience: str = ""  # when set, a token must have been issued for this audience
    required_scope: str = ""  # when set, every protected request needs this scope

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Security:
        security = cls(**(data or {}))
        if security.mode not in ("none", "basic", "apikey", "oauth"):
            raise ValueError(f"unknown security mode {security.mode!r}")
        return security


@dataclass
class Verdict:
    """The outcome of a check: ``ok`` with who the caller is, or how to refuse."""

    ok: bool
    principal: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    error: str = ""
    description: str = ""
    challenge: str = ""  # the WWW-Authenticate value

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", self.challenge)] if self.challenge else []


class _Introspector(IntrospectTokenValidator):
    """authlib's validator, asking the token server over HTTP (one requests session per thread)."""

    def __init__(self, security: Security) -> None:
        super().__init__(realm=security.realm)
        self.security = security
        self._local = threading.local()

    def introspect_token(self, token_string: str) -> dict[str, Any]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = (self.security.introspection_client_id, self.security.introspection_client_secret)
        response = session.post(self.security.introspection_url, data={"token": token_string},
                                timeout=INTROSPECTION_TIMEOUT)
        response.raise_for_status()
        return response.json()


class Guard:
    """Checks one request against ``security``; ``check`` never raises."""

    def __init__(self, security: Security) -> None:
        self.security = security
        self._introspector = _Introspector(security) if security.mode == "oauth" else None

    def check(self, headers: Any, scopes: list[str] | None = None) -> Verdict:
        """``headers`` has a case-insensitive ``get``; ``scopes``: one of them is needed (OAuth only)."""
        mode = self.security.mode
        if mode == "none":
            return Verdict(True, {"scheme": "none"})
        if mode == "basic":
            return self._basic(headers.get("Authorization", ""))
        if mode == "apikey":
            return self._api_key(headers.get(self.security.api_key_header, ""))
        return self._bearer(headers.get("Authorization", ""), scopes)

    def _basic(self, authorization: str) -> Verdict:
        scheme, _, encoded = authorization.partition(" ")
        refused = Verdict(False, status=401, error="invalid_credentials", description="Basic credentials needed",
                          challenge=f'Basic realm="{self.security.realm}", charset="UTF-8"')
        if scheme.lower() != "basic":
            return refused
        try:
            username, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return refused
        good_user = secrets.compare_digest(username.encode(), self.security.username.encode())
        good_password = secrets.compare_digest(password.encode(), self.security.password.encode())
        if not (good_user and good_password):
            return refused
        return Verdict(True, {"scheme": "basic", "username": username})

    def _api_key(self, key: str) -> Verdict:
        if not key or not secrets.compare_digest(key.encode(), self.security.api_key.encode()):
            return Verdict(False, status=401, error="invalid_api_key",
                           description=f"a valid API key is needed in {self.security.api_key_header}",
                           challenge=f'ApiKey header="{self.security.api_key_header}"')
        return Verdict(True, {"scheme": "apikey", "header": self.security.api_key_header})

    def _bearer(self, authorization: str, scopes: list[str] | None) -> Verdict:
        realm = self.security.realm
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no credentials (or another scheme): a bare challenge, no error code.
            return Verdict(False, status=401, error="missing_token", description="a bearer token is needed",
                           challenge=f'Bearer realm="{realm}"')
        assert self._introspector is not None
        needed = [*(scopes or [])]
        try:
            introspection = self._introspector.authenticate_token(token.strip())
        except (requests.RequestException, ValueError) as exc:
            return Verdict(False, status=503, error="temporarily_unavailable",
                           description=f"token introspection failed: {type(exc).__name__}")
        try:
            self._introspector.validate_token(introspection, needed or None, None)
            if self.security.required_scope:
                self._introspector.validate_token(introspection, [self.security.required_scope], None)
        except InvalidTokenError:
            return Verdict(False, status=401, error="invalid_token",
                           description="the access token is unknown, expired or revoked",
                           challenge=f'Bearer realm="{realm}", error="invalid_token", '
                                     'error_description="The access token is unknown, expired or revoked"')
        except InsufficientScopeError:
            wanted = " ".join(needed or [self.security.required_scope])
            return Verdict(False, status=403, error="insufficient_scope",
                           description=f"the token lacks the scope {wanted}",
                           challenge=f'Bearer realm="{realm}", error="insufficient_scope", scope="{wanted}"')
        audience = introspection.get("aud")
        audiences = audience if isinstance(audience, list) else [audience] if audience else []
        if self.security.audience and self.security.audience not in audiences:
            return Verdict(False, status=401, error="invalid_token",
                           description=f"the token was not issued for audience {self.security.audience}",
                           challenge=f'Bearer realm="{realm}", error="invalid_token", '
                                     'error_description="The token was issued for another audience"')
        principal = {"scheme": "bearer", **{key: introspection.get(key) for key in
                                            ("client_id", "scope", "aud", "exp", "iat", "sub")}}
        return Verdict(True, principal)
