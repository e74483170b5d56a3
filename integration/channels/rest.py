"""REST channels: turn an HTTP request into an invocation and its result into a response.

``handle(request)`` is the whole channel: match the route in the snapshot, check the
caller with the channel's security definition, read and parse the body, build the
parameters, call ``integration.invoke`` and render the result. Every reply, error or
not, carries ``X-Zato-CID``; every error uses the one error shape.

``WSGIApplication`` serves it in production: reserved paths (admin, management API,
static files) go to Django's full stack; every other path comes straight here, skipping
the session, CSRF and auth middleware that only the admin needs. The same ``handle`` is
also mounted as a catch-all view in ``config/urls.py`` for ASGI servers and the test client.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.views.decorators.common import no_append_slash
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from integration import jsonio, poller
from integration import snapshot as snapshots
from integration.channels.http_checks import (
    HTTPPolicy,
    InheritedEnviron,
    buffer_chunked_body,
    is_chunked,
    security_logger,
)
from integration.cid import new_cid
from integration.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    SwitchboardError,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
)
from integration.invoke import call_service, invoke_info
from integration.jsonio import json_default
from integration.models import reserved_prefix
from integration.services import HTTP_VERBS, ChannelInfo, Headers, HTTPRequestInfo

logger = logging.getLogger(__name__)

CID_HEADER = "X-Zato-CID"
_JSON_BODY_TYPES = ("", "application/json", "text/plain", "application/x-www-form-urlencoded")
_TEXT_TYPES = {"json": "application/json", "text": "text/plain; charset=utf-8", "xml": "application/xml"}


def error_response(exc: SwitchboardError, cid: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps(error_body(cid, exc.details), default=json_default),
        status=exc.status_code,
        content_type="application/json",
    )
    for key, value in exc.headers.items():
        response[key] = value
    response[CID_HEADER] = cid
    response["Content-Length"] = str(len(response.content))
    return response


def handle(request: HttpRequest) -> HttpResponse:
    """Serve one REST channel request end to end."""
    cid = new_cid()
    request.cid = cid  # type: ignore[attr-defined]  # read by authenticators when they log
    try:
        return _dispatch(request, cid)
    except SwitchboardError as exc:
        return error_response(exc, cid)
    except Exception:
        logger.exception("[%s] REST channel dispatch failed", cid)
        return error_response(SwitchboardError("Internal server error"), cid)


def _dispatch(request: HttpRequest, cid: str) -> HttpResponse:
    meta = request.META
    method = request.method or "GET"
    if method not in HTTP_VERBS:
        raise MethodNotAllowed(list(HTTP_VERBS), "Unsupported HTTP method")
    snap = snapshots.current()
    channel, path_params = snap.routes.match(method, request.path_info, meta.get("HTTP_ACCEPT", ""))
    if not channel.is_active:
        raise NotFound("Channel inactive")
    if channel.service is None:
        logger.error("[%s] Channel %s points to service %s, which is not deployed", cid, channel.name,
                     channel.service_name)
        raise NotFound(f"Service `{channel.service_name}` is not deployed")

    identity = None
    if channel.has_security:
        identity = _authenticate(channel, request)

    content_type = meta.get("CONTENT_TYPE", "")
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(f"Request body larger than {_limit()} bytes") from None
    payload, raw = _parse_body(channel.data_format, content_type, body)

    query = _query_dict(request)
    params = {**path_params, **query} if channel.merge_url_params else {}
    http = HTTPRequestInfo(
        method=method,
        path=request.path_info,
        params=path_params,
        query=query,
        headers=Headers.from_environ(meta),
        accept=meta.get("HTTP_ACCEPT", ""),
        content_type=content_type,
        remote_addr=meta.get("REMOTE_ADDR", ""),
    )
    info = ChannelInfo(
        type="rest",
        name=channel.name,
        security=identity.definition if identity else None,
        username=identity.username if identity else None,
    )
    result = invoke_info(channel.service, payload, cid=cid, snap=snap, channel=info, raw=raw, http=http,
                         params=params)
    response = render_result(result, channel.data_format)
    if identity is not None:
        for key, value in identity.response_headers.items():
            response[key] = value
    return response


def _authenticate(channel: Any, request: HttpRequest) -> Any:
    """The caller's identity, through the security type's contract (``integration.channels.security``)."""
    authenticator = channel.security
    if authenticator is None:
        # Its definition cannot be used (failed to load, type removed or not allowed): nobody passes,
        # and the caller is told it is the platform's fault, not theirs.
        logger.error("[%s] REST channel %s refuses every caller: %s", request.cid, channel.name,
                     channel.security_problem or "its security definition cannot be loaded")
        raise ServiceUnavailable("The channel's security definition cannot be used; the administrator was told")
    request.call_service = call_service  # for types that invoke a service (Vault's chooser)
    try:
        result = authenticator.authenticate(request)
        if result is None:
            raise authenticator.fail("no credentials sent", request)
    except AuthenticationFailed as exc:
        challenge = authenticator.authenticate_header(request)
        raise Unauthorized(str(exc.detail), headers={"WWW-Authenticate": challenge} if challenge else {}) from None
    return result[0]


def _limit() -> int:
    from django.conf import settings

    return settings.MAX_REQUEST_BODY


def _parse_body(data_format: str, content_type: str, body: bytes) -> tuple[Any, bytes | str]:
    if data_format != "json":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("Request body is not valid UTF-8") from None
        return text, text
    if not body:
        return None, body
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _JSON_BODY_TYPES and not media.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type `{media}` is not accepted here; send application/json")
    # integration.jsonio: nesting, number and encoding limits; its InvalidJSON is a 400.
    return jsonio.loads(body, "request body"), body


def _query_dict(request: HttpRequest) -> dict[str, Any]:
    if not request.META.get("QUERY_STRING"):
        return {}
    query: dict[str, Any] = {}
    for key, values in request.GET.lists():
        query[key] = values[0] if len(values) == 1 else values
    return query


def render_result(result: Any, data_format: str = "json") -> HttpResponse:
    """A successful invocation as an HTTP response, with its headers and ``X-Zato-CID``."""
    payload = result.payload
    if isinstance(payload, (dict, list)):
        content = json.dumps(payload, default=json_default)
        content_type = result.content_type or "application/json"
    elif isinstance(payload, bytes):
        content, content_type = payload, result.content_type or "application/octet-stream"
    elif payload is None or payload == "":
        content, content_type = b"", result.content_type or _TEXT_TYPES[data_format]
    else:
        content, content_type = str(payload), result.content_type or _TEXT_TYPES[data_format]
    response = HttpResponse(content, status=result.status_code, content_type=content_type)
    for key, value in result.headers.items():
        response[key] = value
    response[CID_HEADER] = result.cid
    response["Content-Length"] = str(len(response.content))
    return response


@csrf_exempt
@no_append_slash
def channel_view(request: HttpRequest) -> HttpResponse:
    """The catch-all Django view for paths outside the reserved prefixes."""
    return handle(request)


class WSGIApplication:
    """Route REST channel paths around Django's middleware; everything else to Django.

    For every request, before routing: the first request of a process checks the
    configuration version (``poller.ensure_poller``), the server's own environment is taken
    out of the environ (``http_checks.InheritedEnviron``), and a chunked body is read so that
    Django sees it (413 above ``MAX_REQUEST_BODY``). For channel paths, the checks Django's
    middleware would have made for the deployment: ``ALLOWED_HOSTS`` (400), the HTTPS redirect
    and HSTS (``integration/channels/http_checks.py``). Settings are read once, here.
    """

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.policy = HTTPPolicy()
        self.inherited = InheritedEnviron()
        self.max_body = settings.MAX_REQUEST_BODY

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        poller.ensure_poller()
        self.inherited.strip_headers(environ)
        if is_chunked(environ) and not buffer_chunked_body(environ, self.max_body):
            # The rest of the body is never read; the server discards it or closes the connection.
            too_large = PayloadTooLarge(f"Request body larger than {self.max_body} bytes")
            return self._send(error_response(too_large, new_cid()), start_response)
        if reserved_prefix(environ.get("PATH_INFO", "/")):
            self.inherited.strip(environ)
            return self.django_app(environ, start_response)
        policy = self.policy
        host = policy.raw_host(environ)
        if not policy.host_allowed(host):
            return self._send(self._bad_host(host), start_response)
        secure = False
        if policy.needs_scheme:
            secure = policy.is_secure(environ)
            if not secure and policy.redirect:
                response = self._redirect(environ, host)
                if response is not None:
                    return self._send(response, start_response)
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        response = handle(request)
        if secure and policy.hsts is not None and "Strict-Transport-Security" not in response:
            response["Strict-Transport-Security"] = policy.hsts
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        # Closing the response (done by the WSGI server) sends request_finished, which
        # returns database connections as Django's own handler does.
        return response

    @staticmethod
    def _send(response: HttpResponse, start_response: Any) -> list[bytes]:
        # Answered before Django saw the request: no request_started, so no request_finished either.
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return [response.content]

    @staticmethod
    def _bad_host(host: str) -> HttpResponse:
        cid = new_cid()
        security_logger.warning("[%s] Invalid Host header %r on a REST channel path; not in ALLOWED_HOSTS", cid, host)
        return error_response(BadRequest(f"Invalid Host header: {host!r} is not served here"), cid)

    def _redirect(self, environ: dict[str, Any], host: str) -> HttpResponse | None:
        request = WSGIRequest(environ)
        target = self.policy.redirect_target(environ, host, request.get_full_path())
        if target is None:
            return None
        # 301 as Django answers the rest of the site; 308 where a client would replay a 301
        # as a GET without its body, reaching another handler or none.
        status = 301 if request.method in ("GET", "HEAD") else 308
        response = HttpResponse(status=status)
        response["Location"] = target
        response[CID_HEADER] = new_cid()
        response["Content-Length"] = "0"
        return response
