from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from integration.cid import new_cid


class CorrelationIdMiddleware:
    """Give every admin and management API request a CID and return it in ``X-Zato-CID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.cid = new_cid()  # type: ignore[attr-defined]
        response = self.get_response(request)
        if "X-Zato-CID" not in response:
            response["X-Zato-CID"] = request.cid  # type: ignore[attr-defined]
        return response
