"""No 500 from hostile JSON, on every door that takes JSON from outside (issue 11, item 6).

Reproduced before the fix: JSON nested about 1,000 levels deep (Python's decoder raises
``RecursionError``), or an integer of more than 4,300 digits (``ValueError`` from the int
conversion, not a ``JSONDecodeError``), was a 500 with a traceback in the log on REST
channels and on ``/zato/jwt/log-in`` (no credentials needed), and a close 4003 on
WebSockets. Every door now parses through ``integration.jsonio`` and answers 400 in the
one error shape; a WebSocket treats it as any other bad input (before authentication:
an error frame and 4001; after: an error message, and the connection goes on).

Output is the other half: a service that answers data nested too deep to render is the
service's bug, a 500 in the one shape with the traceback logged under the CID, never an
unhandled crash.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts import tokens
from accounts.models import JWTDefinition
from integration import jsonio
from integration.models import DeployedService, WebSocketChannel
from tests.integration.layer_helpers import use_test_layer
from tests.integration.test_rest_channels import assert_error_shape
from tests.integration.ws_helpers import closed_with, hang_up, open_socket, receive, request

API = "/manage/api/v1"

# Each is refused by integration.jsonio; the first two are the reproduced crashes.
HOSTILE = {
    "nested 1,000 deep": "[" * 1000 + "]" * 1000,
    "an integer of 5,000 digits": "1" * 5000,
    "objects nested 1,000 deep": '{"a":' * 1000 + "1" + "}" * 1000,
    "one level over the limit": "[" * (jsonio.MAX_DEPTH + 1) + "]" * (jsonio.MAX_DEPTH + 1),
    "an integer one digit over the limit": '{"n": ' + "9" * (jsonio.MAX_INT_DIGITS + 1) + "}",
    "a number beyond a double": '{"x": 1e400}',
    "NaN, which is not JSON": "[NaN]",
    "an unpaired surrogate": '{"name": "\\udc00"}',
}
# Accepted: exactly at each limit.
AT_THE_LIMITS = "[" * jsonio.MAX_DEPTH + "9" * jsonio.MAX_INT_DIGITS + "]" * jsonio.MAX_DEPTH

DEEP_OUTPUT = """
    from integration.services import Service

    class Deep(Service):
        # Data no JSON encoder renders: the service's bug, which must not crash its channel.
        def handle(self):
            data = []
            for _ in range(5000):
                data = [data]
            self.response.payload = data

    class HugeNumber(Service):
        # Passes the invocation's own output handling, then fails in the encoder (over 4,300 digits).
        def handle(self):
            self.response.payload = {"n": 10 ** 5000}
"""


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> bool:
    return not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


@pytest.fixture
def echo_channel(db: None, make_channel: Any) -> str:
    make_channel("/hostile/echo", "demo.echo")
    return "/hostile/echo"


# REST channels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_rest_channel_answers_hostile_json_with_400_and_logs_no_traceback(client, echo_channel, caplog,
                                                                             body) -> None:
    caplog.set_level(logging.INFO)
    response = client.post(echo_channel, body, content_type="application/json")
    error = assert_error_shape(response, 400)
    assert error["details"].startswith("Invalid JSON in request body: ")
    assert no_tracebacks(caplog), [record.getMessage() for record in caplog.records]


def test_the_messages_say_what_was_wrong(client, echo_channel) -> None:
    def details(body: str) -> str:
        return json.loads(client.post(echo_channel, body, content_type="application/json").content)["details"]

    assert details("[" * 1000 + "]" * 1000) == "Invalid JSON in request body: arrays and objects are nested more " \
                                               "than 100 levels deep"
    assert details("1" * 5000) == "Invalid JSON in request body: an integer has more than 4300 digits"
    assert details('{"a": 1e400}') == "Invalid JSON in request body: the number 1e400 is out of range"
    assert details('{"a": ') == "Invalid JSON in request body: Expecting value (line 1, column 7)"


def test_json_exactly_at_the_limits_is_accepted(client, echo_channel) -> None:
    response = client.post(echo_channel, AT_THE_LIMITS, content_type="application/json")
    assert response.status_code == 200
    assert json.loads(response.content) == json.loads(AT_THE_LIMITS)


@pytest.mark.parametrize("service", ["deep.deep", "deep.huge-number"])
def test_a_rest_channel_answers_500_in_the_one_shape_when_a_service_returns_data_it_cannot_render(
        client, deploy, make_channel, caplog, service) -> None:
    deploy("deep.py", DEEP_OUTPUT)
    make_channel("/hostile/output", service)
    response = client.get("/hostile/output")
    error = assert_error_shape(response, 500, "Internal server error")
    # The service's bug: its traceback is in the log, under the CID the caller was given.
    logged = [record for record in caplog.records if record.exc_info and error["cid"] in record.getMessage()]
    assert logged and logged[0].levelno == logging.ERROR


# /zato/jwt/log-in ----------------------------------------------------------------------------------


@pytest.fixture
def jwt_account(db: None) -> JWTDefinition:
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    return definition


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_jwt_log_in_answers_hostile_json_with_400_and_logs_no_traceback(client, jwt_account, caplog, body) -> None:
    caplog.set_level(logging.INFO)
    response = client.post("/zato/jwt/log-in", body, content_type="application/json")
    error = assert_error_shape(response, 400)
    assert error["details"].startswith("Invalid JSON in request body: ")
    assert error["details"].endswith("send a JSON object with `username` and `password`")
    assert no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("username", "why"),
    [
        # PostgreSQL refuses NUL in text: a name with one can belong to no definition.
        ("front\x00end", "control character"),
        ("\x1b[31mfrontend", "control character"),  # a terminal escape, for whoever reads the log
        ("f" * 201, "longer than any definition's username"),
    ],
)
def test_jwt_log_in_refuses_a_username_no_definition_can_have(client, jwt_account, caplog, username, why) -> None:
    response = client.post("/zato/jwt/log-in", json.dumps({"username": username, "password": "jwt-secret-1"}),
                           content_type="application/json")
    error = assert_error_shape(response, 400)
    assert error["details"] == "`username` must be at most 200 characters, with no control characters", why
    assert no_tracebacks(caplog)


def test_jwt_log_in_still_works(client, jwt_account) -> None:
    response = client.post("/zato/jwt/log-in", json.dumps({"username": "frontend", "password": "jwt-secret-1"}),
                           content_type="application/json")
    assert response.status_code == 200 and response.json()["token"]


def test_jwt_log_in_answers_a_body_over_the_size_limit_with_413_in_the_one_shape(client, jwt_account,
                                                                                  settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "frontend", "password": "x" * 2000})
    error = assert_error_shape(client.post("/zato/jwt/log-in", body, content_type="application/json"), 413)
    assert error["details"] == "Request body larger than 1000 bytes"


# The management API and the admin ------------------------------------------------------------------


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_management_api_invoke_answers_hostile_json_with_400(api, builtins, caplog, body) -> None:
    response = api.generic("POST", f"{API}/invoke/demo.echo", body, content_type="application/json")
    error = assert_error_shape(response, 400)
    assert error["details"].startswith("Invalid JSON in request body: ")
    assert no_tracebacks(caplog)


def test_every_management_api_resource_parses_json_within_the_limits(api, builtins, caplog) -> None:
    deep = '{"name": "x", "service": ' + "[" * 1000 + "]" * 1000 + "}"
    for path in ("channels/rest/", "channels/websocket/", "security/basic-auth/", "scheduling/jobs/"):
        response = api.generic("POST", f"{API}/{path}", deep, content_type="application/json")
        error = assert_error_shape(response, 400)
        assert error["details"].startswith("Invalid JSON in request body: arrays and objects are nested"), path
    assert no_tracebacks(caplog)


@pytest.mark.parametrize("service", ["deep.deep", "deep.huge-number"])
def test_the_management_api_invoke_answers_500_when_the_output_cannot_be_rendered(api, deploy, caplog,
                                                                                   service) -> None:
    deploy("deep.py", DEEP_OUTPUT)
    response = api.post(f"{API}/invoke/{service}", {}, format="json")
    error = assert_error_shape(response, 500, "Internal server error")
    assert [record for record in caplog.records if record.exc_info and error["cid"] in record.getMessage()]


def test_the_admin_invoke_page_refuses_hostile_json_and_shows_output_it_cannot_render(admin_client_alice, deploy,
                                                                                      builtins) -> None:
    deploy("deep.py", DEEP_OUTPUT)
    echo = DeployedService.objects.get(name="demo.echo")
    page = admin_client_alice.post(f"/admin/integration/deployedservice/{echo.pk}/invoke/",
                                   {"payload": "[" * 1000 + "]" * 1000})
    assert page.status_code == 200
    assert "Not valid JSON: arrays and objects are nested more than 100 levels deep" in page.content.decode()
    deep = DeployedService.objects.get(name="deep.deep")
    page = admin_client_alice.post(f"/admin/integration/deployedservice/{deep.pk}/invoke/", {"payload": ""})
    assert page.status_code == 200 and 'id="invoke-status">500<' in page.content.decode()
    huge = DeployedService.objects.get(name="deep.huge-number")
    page = admin_client_alice.post(f"/admin/integration/deployedservice/{huge.pk}/invoke/", {"payload": ""})
    assert page.status_code == 200 and 'id="invoke-status">200<' in page.content.decode()
    assert "the response cannot be shown as JSON: ValueError" in page.content.decode()


# WebSocket channels --------------------------------------------------------------------------------


@pytest.fixture
def app(transactional_db: None, settings: Any, deploy: Any, builtins: None) -> Any:
    """The real ASGI application on the Redis channel layer (a prefix of this test's own), with:
    an open channel on demo.echo, a JWT channel, and one on a service answering data too deep to render."""
    use_test_layer(settings, "test-hostile")
    deploy("deep.py", DEEP_OUTPUT)
    definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
    definition.set_password("jwt-secret-1")
    definition.save()
    echo = DeployedService.objects.get(name="demo.echo")
    WebSocketChannel.objects.create(name="open", path="/ws/open", service=echo)
    WebSocketChannel.objects.create(name="jwt", path="/ws/jwt", service=echo, security=definition)
    WebSocketChannel.objects.create(name="deep", path="/ws/deep", service=DeployedService.objects.get(name="deep.deep"))
    from config.asgi import application

    return application


def run(scenario: Any) -> Any:
    """Run an async test body on an event loop of its own (the test itself stays synchronous)."""
    return async_to_sync(scenario)()


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_websocket_answers_hostile_json_after_authentication_and_stays_open(app, caplog,
                                                                              text) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        socket = await open_socket(app, "/ws/open")
        try:
            await socket.send_to(text_data=text)
            answer = await receive(socket)
            still = await request(socket, "after", {"still": "here"})
        finally:
            await hang_up(socket)
        return answer, still

    answer, still = run(scenario)
    assert answer["type"] == "error" and answer["status"] == 400
    assert answer["error"]["details"].startswith("Invalid JSON in message: ")
    assert re.fullmatch(r"[0-9a-f]{24}", answer["cid"]) and answer["error"]["cid"] == answer["cid"]
    assert still["status"] == 200 and still["response"] == {"still": "here"}
    assert no_tracebacks(caplog)


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_websocket_closes_with_4001_on_hostile_json_before_authentication(app, caplog,
                                                                            text) -> None:
    async def scenario() -> tuple[dict[str, Any], tuple[int, str]]:
        socket = await open_socket(app, "/ws/jwt")
        try:
            await socket.send_to(text_data=text)
            why = await receive(socket)  # daphne passes no close reason on: the frame before says why
            return why, await closed_with(socket)
        finally:
            await hang_up(socket)

    why, (code, _reason) = run(scenario)
    assert code == 4001  # bad input before authentication, never 4003 (a server error)
    assert why["type"] == "error" and why["status"] == 400
    assert why["error"]["details"].startswith("Invalid JSON in message: ")
    assert no_tracebacks(caplog)


def test_a_websocket_reply_too_deep_to_render_is_a_500_reply_and_the_connection_goes_on(app,
                                                                                         caplog) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        socket = await open_socket(app, "/ws/deep")
        try:
            broken = await request(socket, 1)
            pong_request = {"type": "ping", "id": "p"}
            await socket.send_to(text_data=json.dumps(pong_request))
            return broken, await receive(socket)
        finally:
            await hang_up(socket)

    broken, pong = run(scenario)
    assert broken["status"] == 500 and broken["error"]["details"] == "Internal server error"
    assert pong == {"type": "pong", "id": "p"}
    assert [record for record in caplog.records if record.exc_info and broken["cid"] in record.getMessage()]


def test_a_jwt_websocket_still_authenticates(app) -> None:
    definition = JWTDefinition.objects.get(name="browsers")
    token = tokens.issue(definition.pk, definition.username, definition.ttl)

    async def scenario() -> dict[str, Any]:
        socket = await open_socket(app, "/ws/jwt")
        try:
            await socket.send_to(text_data=json.dumps({"type": "auth", "token": token}))
            await receive(socket)
            return await request(socket, 1, {"n": [1, 2]})
        finally:
            await hang_up(socket)

    assert run(scenario)["response"] == {"n": [1, 2]}
