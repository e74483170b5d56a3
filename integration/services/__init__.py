"""The Service base class and what a service sees: request, response, CID, logger.

A service is a class with ``handle()`` (or ``handle_GET``/``handle_POST``/...). It never
knows which channel called it or how the caller was authenticated: the platform builds
``self.request`` and reads ``self.response`` through the one invocation path,
``integration.invoke``. A minimal service::

    from integration.services import Service

    class GetCustomer(Service):
        class SimpleIO:
            input_required = ("customer_id",)
            output_required = ("name",)

        def handle(self):
            self.response.payload = {"name": f"Customer {self.request.input.customer_id}"}

Deployed from ``my_api.py`` it is named ``my-api.get-customer`` (Zato's rule); set a
class attribute ``name`` to choose another name.

The package's modules ``core``, ``demo`` and ``websocket`` are integration's built-in services
(``settings.BUILTIN_SERVICE_MODULES``), as ``accounts.services`` and ``scheduling.services`` are
their apps'. This module never imports them: importing the API loads no built-in service.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from integration.errors import (  # re-exported for service authors
    BadRequest,
    Forbidden,
    NotFound,
    PushFailed,
    SwitchboardError,
    Unauthorized,
)
from integration.sio import (  # re-exported for service authors
    UTC,
    UUID,
    AsIs,
    Bool,
    Bunch,
    Date,
    DateTime,
    Decimal,
    Dict,
    DictList,
    Float,
    Int,
    List,
    Many,
    Opaque,
    Secret,
    Text,
)

if TYPE_CHECKING:
    from integration.invoke import Invoker

__all__ = [
    "UTC", "UUID", "AsIs", "BadRequest", "Bool", "Bunch", "Date", "DateTime", "Decimal", "Dict",
    "DictList", "Float", "Forbidden", "HTTPRequestInfo", "Int", "List", "Many", "NotFound", "Opaque",
    "PushFailed", "Request", "Response", "Secret", "Service", "SwitchboardError", "Text", "Unauthorized",
]

HTTP_VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class Headers(Mapping[str, str]):
    """Request headers with case-insensitive names (``headers['accept']``)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {key.lower(): value for key, value in (items or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        headers = cls()
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers._items[key[5:].replace("_", "-").lower()] = value
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                headers._items[key.replace("_", "-").lower()] = value
        return headers


@dataclass
class HTTPRequestInfo:
    """What a service sees of the HTTP request that invoked it (empty for non-HTTP channels)."""

    method: str = ""
    path: str = ""
    params: dict[str, str] = field(default_factory=dict)  # path parameters, e.g. {"user_id": "1"}
    query: dict[str, Any] = field(default_factory=dict)  # repeated keys give a list
    headers: Headers = field(default_factory=Headers)
    accept: str = ""  # the request's Accept header, as sent ("" when absent)
    content_type: str = ""
    remote_addr: str = ""

    @property
    def GET(self) -> dict[str, Any]:
        return self.query


@dataclass
class Request:
    """The request a service handles: ``input`` (validated), ``payload`` (parsed body), ``http``."""

    payload: Any = None
    raw_request: bytes | str = b""
    input: Any = field(default_factory=Bunch)
    http: HTTPRequestInfo = field(default_factory=HTTPRequestInfo)
    channel_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Response:
    """What a service returns: ``payload``, ``status_code``, ``headers``, ``content_type``."""

    payload: Any = ""
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True)
class ChannelInfo:
    """Which channel invoked the service: ``type`` is rest, invoke, scheduler, websocket, ..."""

    type: str
    name: str = ""
    security: str | None = None  # name of the security definition that authenticated the caller
    username: str | None = None
    client_id: str | None = None  # WebSocket channels: the calling connection, for self.push()


class CIDLogger(logging.LoggerAdapter):
    """Prefixes every line with the correlation id, so one request's lines can be grepped."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['cid']}] {msg}", kwargs


class Service:
    """Base class of every service. Subclass it and implement ``handle`` or ``handle_<VERB>``.

    Set by the platform before ``handle`` runs: ``cid``, ``name``, ``request``, ``response``,
    ``channel``, ``logger``. ``self.invoke(name, payload)`` calls another service through
    the same invocation path with the same CID.
    """

    name: ClassVar[str | None] = None

    cid: str
    request: Request
    response: Response
    channel: ChannelInfo
    logger: logging.LoggerAdapter
    _invoker: Invoker

    def handle(self) -> None:
        """Handle a request; the default does nothing and returns an empty response."""

    @property
    def wsgi_environ(self) -> dict[str, str]:
        """Request headers in WSGI form (``HTTP_ACCEPT``), as Zato services read them."""
        return {"HTTP_" + key.upper().replace("-", "_"): value for key, value in self.request.http.headers.items()}

    def invoke(self, name: str, payload: Any = None, **kwargs: Any) -> Any:
        """Invoke another service by name, in this process, with this CID; return its response payload.

        Keyword arguments become the payload when no payload is given. Errors raised by the
        other service propagate (a ``BadRequest`` there is a ``BadRequest`` here).
        """
        if payload is None and kwargs:
            payload = kwargs
        return self._invoker.invoke_nested(self, name, payload)

    def invoke_async(self, name: str, payload: Any = None) -> str:
        """Hand an invocation to a Celery worker; return the new CID at once."""
        return self._invoker.submit_async(name, payload, parent_cid=self.cid)

    @property
    def out(self) -> Any:
        """Outgoing connections by kind and name: ``self.out.vault["prod"]`` (``connections.outgoing``)."""
        return self._invoker.out

    @property
    def outgoing(self) -> Any:
        """Zato's other spelling of ``self.out`` (``self.outgoing.plain_http[name]``)."""
        return self._invoker.out

    def push(
        self, data: Any, *, client: str | None = None, channel: str | None = None, user: str | None = None
    ) -> None:
        """Push ``data`` to connected WebSocket clients: one ``client`` (an id), a ``channel``'s, a ``user``'s.

        With no recipient named, a service invoked over WebSocket pushes to the client that
        called it. Clients not connected are skipped: a push is not queued for later.
        Works in every process (web, worker), through the channel layer (``integration.push``).
        Raises ``PushFailed`` (503 to the caller, unless the service catches it) when the layer
        cannot be reached within ``PUSH_TIMEOUT`` seconds.
        """
        if client is None and channel is None and user is None:
            client = getattr(getattr(self, "channel", None), "client_id", None)
            if client is None:
                raise ValueError("Name who gets the push: client=, channel= or user=")
        self._invoker.push(data, client=client, channel=channel, user=user, cid=getattr(self, "cid", None))


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def uncamelify(name: str) -> str:
    """``GetCustomer`` -> ``get-customer``; acronyms stay together (``ILikeWSDLDocs`` -> ``i-like-wsdl-docs``)."""
    return _CAMEL_BOUNDARY.sub("-", name).lower()


def service_name(cls: type[Service], module_name: str) -> str:
    """The service's name: ``cls.name`` if set, else Zato's rule from module stem and class name."""
    explicit = cls.__dict__.get("name")
    if explicit:
        return str(explicit)
    stem = module_name.rsplit(".", 1)[-1].replace("_", "-")
    return f"{stem}.{uncamelify(cls.__name__)}"


def http_handlers(cls: type[Service]) -> frozenset[str]:
    """The verbs a service handles itself with ``handle_<VERB>`` methods (case-sensitive, as Zato)."""
    return frozenset(verb for verb in HTTP_VERBS if callable(getattr(cls, f"handle_{verb}", None)))
