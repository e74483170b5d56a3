"""One error hierarchy for every channel, rendered in one shape.

The shape is Zato's, so clients written for Zato keep working: a JSON object
``{"result": "Error", "cid": "...", "details": ...}`` where ``details`` is present only
when there is something to say. Services raise these exceptions (they are re-exported by
``integration.services``); anything else raised by a service becomes a 500 whose
traceback goes to the log under the CID, never to the caller.
"""

from __future__ import annotations

from typing import Any


class SwitchboardError(Exception):
    """An error with an HTTP status that the caller may see."""

    status_code = 500
    default_details: str | None = None

    def __init__(self, details: Any = None, *, headers: dict[str, str] | None = None) -> None:
        self.details = self.default_details if details is None else details
        self.headers = dict(headers or {})
        super().__init__(self.details)


class BadRequest(SwitchboardError):
    status_code = 400


class Unauthorized(SwitchboardError):
    status_code = 401
    default_details = "Unauthorized"


class Forbidden(SwitchboardError):
    status_code = 403
    default_details = "Forbidden"


class NotFound(SwitchboardError):
    status_code = 404
    default_details = "Not found"


class MethodNotAllowed(SwitchboardError):
    status_code = 405
    default_details = "Method not allowed"

    def __init__(self, allowed: list[str], details: Any = None) -> None:
        super().__init__(details, headers={"Allow": ", ".join(sorted(set(allowed)))})
        self.allowed = sorted(set(allowed))


class NotAcceptable(SwitchboardError):
    status_code = 406
    default_details = "Not acceptable"


class PayloadTooLarge(SwitchboardError):
    status_code = 413
    default_details = "Request body too large"


class UnsupportedMediaType(SwitchboardError):
    status_code = 415
    default_details = "Unsupported media type"


class TooManyRequests(SwitchboardError):
    """Refused before any check, after too many failures; ``Retry-After`` says for how long."""

    status_code = 429
    default_details = "Too many requests"


class ServiceUnavailable(SwitchboardError):
    """A system the platform depends on (a Vault server, say) cannot be reached; nothing was let through."""

    status_code = 503
    default_details = "Service unavailable"


class PushFailed(ServiceUnavailable):
    """The channel layer (Redis, or the embedded SQLite file) could not be reached, or did not answer
    within ``PUSH_TIMEOUT`` seconds: the push or disconnect may have reached nobody (``integration.push``)."""

    default_details = "The channel layer cannot be reached; the push was not delivered. Try again later"


class ServiceNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No such service `{name}`")
        self.name = name


class ValidationFailed(BadRequest):
    """Input did not match a service's declaration; ``problems`` names each bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class OutputInvalid(SwitchboardError):
    """A service produced output that does not match its declaration (the author's bug)."""

    status_code = 500


class InternalError(SwitchboardError):
    status_code = 500
    default_details = "Internal server error"


def error_body(cid: str, details: Any = None) -> dict[str, Any]:
    """The one error shape."""
    body: dict[str, Any] = {"result": "Error", "cid": cid}
    if details not in (None, ""):
        body["details"] = details
    return body
