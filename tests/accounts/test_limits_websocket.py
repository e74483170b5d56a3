"""WebSocket authentication goes through the same limits: a blocked caller is closed with 4429.

Against the real ASGI application on the Redis channel layer, with the fixtures of
tests/integration/test_websocket.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import LoginAttempt
from integration.channels.websocket import THROTTLED
from tests.integration import ws_helpers as websocket_tests
from tests.integration.ws_helpers import closed_with, hang_up, open_socket, receive, send

pytestmark = pytest.mark.django_db(transaction=True)
# The WebSocket tests' fixtures, used here under the same names.
layer, app, ws_channel, basic_channel = (websocket_tests.layer, websocket_tests.app, websocket_tests.ws_channel,
                                         websocket_tests.basic_channel)
run = websocket_tests.run


def test_after_too_many_failures_the_right_password_is_closed_with_4429(app, basic_channel, settings) -> None:
    settings.CREDENTIAL_MAX_FAILURES = 2

    async def attempt(password: str) -> tuple[dict[str, Any], int | None]:
        socket = await open_socket(app, "/ws/crm")
        try:
            await send(socket, {"type": "auth", "username": "crm-user", "password": password})
            answer = await receive(socket)
            code = None if answer.get("type") == "authenticated" else (await closed_with(socket))[0]
            return answer, code
        finally:
            await hang_up(socket)

    async def scenario() -> list[tuple[dict[str, Any], int | None]]:
        return [await attempt("wrong-1"), await attempt("wrong-2"), await attempt("crm-secret")]

    (_, first), (_, second), (refusal, third) = run(scenario)
    assert (first, second) == (4403, 4403)
    assert third == THROTTLED == 4429
    # The error frame before the close says why, in the one shape, with the status a REST caller would get.
    assert refusal["status"] == 429 and "Too many failed attempts" in refusal["error"]["details"]
    assert LoginAttempt.objects.filter(kind="channel", definition="crm").count() == 2
