"""Security types: the contract every kind of security definition meets, and the registry channels own.

A *security type* (HTTP Basic Auth, technical account, API key, JWT, Vault, ...) is one
``SecurityType`` object, registered by the app that owns it in ``AppConfig.ready()``::

    security.register(SecurityType(name="apikey", label="API key", model="accounts.ApiKey",
                                   compile=ApiKeyAuthentication.from_definition))

Channels never name a type. For each definition row the snapshot holds the type's compiled
``Authenticator``, and REST and WebSocket channels use only its methods:

* ``authenticate(request)``: DRF's contract. ``None`` when the request carries no credentials
  of this kind, ``CredentialsRefused`` (a 401) when it carries wrong ones, ``(CallerIdentity,
  definition name)`` on success. A backend that cannot be asked raises ``ServiceUnavailable``
  (503), a caller over the brute-force limits ``TooManyRequests`` (429);
* ``authenticate_header(request)``: the ``WWW-Authenticate`` challenge of a 401;
* ``has_header_credentials(meta)``: whether a WebSocket upgrade request carries credentials
  of this kind in its headers (if not, the client sends them in its first message);
* ``websocket_credentials(token=, username=, password=)``: the request headers that carry
  credentials sent in a WebSocket message, for ``authenticate``; ``CredentialsRefused`` when
  the type needs other ones;
* ``session(request)``: after a success, the ``Session`` a long-lived connection keeps alive
  (a JWT's), or None; ``session_ended(request)``: after a refusal, whether the credentials
  were good once and their session has ended (a WebSocket closes 4440 rather than 4403).

The registry also says which types a channel kind accepts (``allowed``), gives the model
field its choices (``choices``) and maps a definition model to its type (``sec_type_of``).
A type registered twice is an error at start-up; a definition whose type is no longer
registered (a removed plug-in) simply is not compiled: its channels answer 503 with the CID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import AuthenticationFailed

logger = logging.getLogger(__name__)

REST = "rest"
WEBSOCKET = "websocket"


@dataclass(frozen=True)
class CallerIdentity:
    """Who called a channel, as far as its security definition can tell.

    ``response_headers`` are added to the channel's response (Vault hands back a token).
    """

    username: str
    definition: str
    sec_type: str
    is_authenticated: bool = True
    response_headers: dict[str, str] = field(default_factory=dict)


class CredentialsRefused(AuthenticationFailed):
    """Wrong credentials: ``reason`` is for the log and audit list; ``counts`` towards the limits or not."""

    def __init__(self, detail: str, *, reason: str = "", counts: bool = True, username: str = "") -> None:
        super().__init__(detail)
        self.reason = reason or detail
        self.counts = counts
        self.username = username


class Session:
    """What a long-lived connection keeps alive after authenticating (a JWT's server-side session).

    ``keep_alive()`` extends it by ``ttl`` seconds: True while it lives, False once it has ended
    (expired, logged out), None when its store cannot say right now (the connection keeps to the
    time it was last known good).
    """

    ttl: int = 0

    def keep_alive(self) -> bool | None:
        raise NotImplementedError


class Authenticator:
    """One definition, compiled for the snapshot; see the module docstring for the contract."""

    sec_type: str = ""
    name: str = ""
    is_active: bool = True

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        raise NotImplementedError

    def authenticate_header(self, request: Any) -> str:
        return ""

    def fail(self, reason_for_log: str, request: Any, message: str = "Unauthorized", *, counts: bool = True,
             username: str = "") -> CredentialsRefused:
        return CredentialsRefused(message, reason=reason_for_log, counts=counts, username=username)

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return False

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        raise CredentialsRefused("WebSocket clients cannot carry this channel's type of credentials")

    def session(self, request: Any) -> Session | None:
        return None

    def session_ended(self, request: Any) -> bool:
        return False


@dataclass(frozen=True)
class SecurityType:
    """One kind of security definition, as its app registers it.

    ``name`` is the stored ``sec_type`` (Zato's names: ``basic_auth``, ``jwt``...), ``model`` the
    definition model (``"app_label.ModelName"``, a subclass of ``accounts.SecurityDefinition``),
    ``compile`` builds the ``Authenticator`` of one row (no network, no queries), ``channel_kinds``
    the channel kinds that accept it.
    """

    name: str
    label: str
    model: str
    compile: Callable[[Any], Authenticator]
    channel_kinds: frozenset[str] = frozenset({REST, WEBSOCKET})


_types: dict[str, SecurityType] = {}


def register(security_type: SecurityType) -> SecurityType:
    """Add a type (from ``AppConfig.ready()``); a name or model registered twice is an error."""
    if security_type.name in _types:
        raise ImproperlyConfigured(f"Security type `{security_type.name}` is registered twice "
                                   f"(by {_types[security_type.name].model} and {security_type.model})")
    for known in _types.values():
        if known.model.lower() == security_type.model.lower():
            raise ImproperlyConfigured(f"Model {security_type.model} is registered as two security types: "
                                       f"`{known.name}` and `{security_type.name}`")
    _types[security_type.name] = security_type
    return security_type


def unregister(name: str) -> None:
    """Remove a type (tests that play a removed plug-in)."""
    _types.pop(name, None)


def get(name: str) -> SecurityType | None:
    return _types.get(name)


def types() -> list[SecurityType]:
    return list(_types.values())


def choices() -> list[tuple[str, str]]:
    """The model field's choices: every registered type."""
    return [(t.name, t.label) for t in _types.values()]


def allowed(channel_kind: str) -> list[SecurityType]:
    return [t for t in _types.values() if channel_kind in t.channel_kinds]


def sec_type_of(model: type) -> str:
    """The type name of a definition model (its ``save()`` stores it); an unregistered model is an error."""
    label = model._meta.label_lower
    for security_type in _types.values():
        if security_type.model.lower() == label:
            return security_type.name
    raise ImproperlyConfigured(f"{model._meta.label} is not a registered security type")


def wsgi(value: str) -> str:
    """A header value as WSGI hands it over (UTF-8 bytes read as latin-1), which authenticators expect."""
    return value.encode("utf-8").decode("latin-1")


def problem(sec_type: str | None, channel_kind: str) -> str:
    """Why a definition of this type cannot protect a channel of this kind ("" when it can)."""
    if sec_type is None:
        return ""
    security_type = _types.get(sec_type)
    if security_type is None:
        return f"Security type `{sec_type}` is not installed (its plug-in was removed)"
    if channel_kind not in security_type.channel_kinds:
        names = ", ".join(t.label for t in allowed(channel_kind))
        return f"{security_type.label} definitions cannot protect {channel_kind} channels (allowed: {names})"
    return ""


class SecurityTable:
    """Definition id -> authenticator, built once per configuration version from every registered type."""

    def __init__(self, by_id: dict[int, Authenticator]) -> None:
        self.by_id = by_id

    @classmethod
    def build(cls, registered: Iterable[SecurityType] | None = None) -> SecurityTable:
        by_id: dict[int, Authenticator] = {}
        for security_type in list(registered if registered is not None else _types.values()):
            for definition in apps.get_model(security_type.model).objects.all():
                try:
                    by_id[definition.pk] = security_type.compile(definition)
                except Exception:
                    # One broken definition (a secret that no key decrypts, say) must not take every
                    # channel down: its own channels answer 503 with the CID, the rest work.
                    logger.exception("Security definition `%s` cannot be loaded; its channels refuse every caller",
                                     definition.name)
        return cls(by_id)

    def get(self, definition_id: int | None) -> Authenticator | None:
        if definition_id is None:
            return None
        return self.by_id.get(definition_id)

    def by_name(self, name: str) -> Authenticator | None:
        for authenticator in self.by_id.values():
            if authenticator.name == name:
                return authenticator
        return None

    def __len__(self) -> int:
        return len(self.by_id)
