"""Zato's JWT endpoints: ``POST /zato/jwt/log-in`` and ``POST /zato/jwt/log-out``.

Log-in takes ``{"username": ..., "password": ...}`` for a JWT definition and answers
``{"token": ...}`` (also in an ``Authorization`` response header, where Zato's clients
look). A failed log-in is a 401 that never says which half was wrong. Log-out revokes the
``Authorization: Bearer`` token it is given; logging out a token that is already gone
succeeds, as in Zato. Both answer errors in the one error shape with ``X-Zato-CID``.

Log-ins are held to the brute-force limits of ``accounts.limits``, per (JWT definition, client
address); log-ins naming no definition share one count per address, so trying usernames
does not buy more guesses. A blocked log-in is 429 with ``Retry-After``, before any password
is hashed.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts import crypto, limits, tokens
from accounts.services import find_jwt
from integration import jsonio
from integration.channels.rest import CID_HEADER, error_response
from integration.cid import new_cid
from integration.errors import (
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    SwitchboardError,
    Unauthorized,
)

logger = logging.getLogger(__name__)
NO_SUCH_DEFINITION = "?"  # the one limits key, per address, of log-ins naming no JWT definition
# JWTDefinition.username's max_length: a longer name cannot belong to any definition.
MAX_USERNAME_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _json_reply(body: dict[str, Any], cid: str, **headers: str) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type="application/json")
    response[CID_HEADER] = cid
    for key, value in headers.items():
        response[key] = value
    return response


def _guard(view: Any) -> Any:
    """POST only; errors rendered in the one shape under the request's CID."""

    @csrf_exempt
    def wrapped(request: HttpRequest) -> HttpResponse:
        cid = getattr(request, "cid", None) or new_cid()
        request.cid = cid  # type: ignore[attr-defined]
        try:
            if request.method != "POST":
                raise MethodNotAllowed(["POST"])
            return view(request, cid)
        except SwitchboardError as exc:
            return error_response(exc, cid)
        except tokens.SessionStoreUnavailable as exc:
            logger.error("[%s] JWT session store unavailable: %s", cid, exc)
            return error_response(ServiceUnavailable("Tokens cannot be issued right now; try again later"), cid)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _credentials(request: HttpRequest) -> tuple[str, str]:
    """The username and password of a log-in body, or BadRequest / PayloadTooLarge saying what is wrong.

    Anyone can reach this without credentials, so the body is parsed within
    ``integration.jsonio``'s limits, and a username that no definition can have (longer
    than the model allows, or with control characters such as NUL, which PostgreSQL
    refuses) is refused here, before anything looks it up, logs it or counts it.
    """
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(f"Request body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes") from None
    try:
        data = jsonio.loads(body or b"{}", "request body")
    except jsonio.InvalidJSON as exc:
        raise BadRequest(f"{exc.details}; send a JSON object with `username` and `password`") from None
    if not isinstance(data, dict):
        raise BadRequest("Send a JSON object with `username` and `password`")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise BadRequest("`username` and `password` are required strings")
    if len(username) > MAX_USERNAME_LENGTH or _CONTROL.search(username):
        raise BadRequest(f"`username` must be at most {MAX_USERNAME_LENGTH} characters, with no control characters")
    return username, password


@_guard
def jwt_log_in(request: HttpRequest, cid: str) -> HttpResponse:
    """Exchange a JWT definition's username and password for a token."""
    username, password = _credentials(request)
    authenticator = find_jwt(username=username)
    attempt = limits.Attempt.of(request, limits.Kind.JWT_LOGIN,
                                authenticator.name if authenticator else NO_SUCH_DEFINITION, username=username)
    attempt.refuse_if_blocked()
    if authenticator is not None:
        password_ok = authenticator.check_password(password, attempt)
    else:
        # Hash anyway (a stored value nothing matches), so timing does not reveal which usernames exist.
        attempt.before_slow_check()
        password_ok = crypto.check_password(password, "").ok
    reason = None
    if authenticator is None:
        reason = "no JWT definition has this username"
    elif not password_ok:
        reason = "wrong password"
    elif not authenticator.is_active:
        reason = f"definition `{authenticator.name}` is inactive"
    if reason is not None or authenticator is None:
        logger.warning("[%s] JWT log-in refused for %r: %s", cid, username[:100], reason)
        if authenticator is None or not password_ok:  # an inactive definition's right password is no guess
            attempt.failed(reason or "refused")
        raise Unauthorized("Invalid credentials", headers={"WWW-Authenticate": "Bearer"})
    attempt.passed()
    token = tokens.issue(authenticator.definition_id, authenticator.username, authenticator.ttl)
    logger.info("[%s] JWT log-in of `%s` (definition `%s`)", cid, authenticator.username, authenticator.name)
    return _json_reply({"token": token}, cid, Authorization=token)


@_guard
def jwt_log_out(request: HttpRequest, cid: str) -> HttpResponse:
    """Revoke the ``Authorization: Bearer`` token (idempotent)."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadRequest("No JWT found: send Authorization: Bearer <token>")
    try:
        claims = tokens.open_token(token.strip())
    except tokens.InvalidToken as exc:
        logger.warning("[%s] JWT log-out with a bad token: %s", cid, exc)
        raise BadRequest("Invalid token") from None
    revoked = tokens.revoke(claims.sid)
    logger.info("[%s] JWT log-out of `%s` (%s)", cid, claims.username[:100],
                "session ended" if revoked else "session was already gone")
    return _json_reply({"result": "OK"}, cid)
