"""Plug-ins: a security type and a connection type from a test app, used with no change anywhere else.

``tests.plugin_app`` (installed by tests/settings.py only) registers the ``shout`` security type
and the ``echo`` connection type in its ``AppConfig.ready()``. These tests use them through a
REST channel, a WebSocket channel and ``self.out``, and check what happens when a plug-in is
registered twice, removed, or not allowed for a channel kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import Client

from connections import base as connection_types
from integration import snapshot
from integration.channels import security
from integration.errors import ServiceUnavailable, SwitchboardError
from integration.invoke import invoke
from integration.models import DeployedService, RestChannel, WebSocketChannel
from tests.integration.ws_helpers import closed_with, hang_up, open_socket, receive, request, send
from tests.plugin_app.models import EchoConnection, ShoutDefinition
from tests.plugin_app.types import EchoClient

SERVICES = """
from integration.services import Service

class Whoami(Service):
    def handle(self):
        self.response.payload = {"user": self.channel.username, "security": self.channel.security}

class UseEcho(Service):
    def handle(self):
        name = self.request.payload["name"]
        self.response.payload = {
            "out": self.out.echo[name].call("hi"),
            "alias": self.out.test.echo.get(name).call("there"),
            "outgoing": self.outgoing.echo[name].call("!"),
        }
"""


@pytest.fixture
def plugin_services(deploy: Any, builtins: None) -> None:
    deploy("plugin_demo.py", SERVICES)


@pytest.fixture
def shout(db: None) -> ShoutDefinition:
    return ShoutDefinition.objects.create(name="shouters", word="HELLO")


@pytest.fixture
def shout_rest(plugin_services: None, shout: ShoutDefinition) -> RestChannel:
    return RestChannel.objects.create(name="shouted", url_path="/plugin/whoami", security=shout,
                                      service=DeployedService.objects.get(name="plugin-demo.whoami"))


@pytest.fixture
def restore_registries() -> Iterator[None]:
    """Tests below remove or replace registered types: put the registries back as they were."""
    saved_security = dict(security._types)
    saved_connections = dict(connection_types._types)
    yield
    security._types.clear()
    security._types.update(saved_security)
    connection_types._types.clear()
    connection_types._types.update(saved_connections)
    snapshot.reset()


# --- The security type through a REST channel --------------------------------------------------------


@pytest.mark.django_db
def test_a_plugged_in_security_type_protects_a_rest_channel(shout_rest: RestChannel) -> None:
    client = Client()
    refused = client.get("/plugin/whoami")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == "shout"
    assert client.get("/plugin/whoami", HTTP_X_SHOUT="hello").status_code == 401
    answer = client.get("/plugin/whoami", HTTP_X_SHOUT="HELLO")
    assert answer.status_code == 200
    assert answer.json() == {"user": "shouter", "security": "shouters"}
    assert ShoutDefinition.objects.get().sec_type == "shout"
    assert ("shout", "Shouted word") in security.choices()


# --- The security type through a WebSocket channel ----------------------------------------------------


@pytest.fixture
def shout_ws(transactional_db: None, deploy: Any, builtins: None, settings: Any) -> WebSocketChannel:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    deploy("plugin_demo.py", SERVICES)
    definition = ShoutDefinition.objects.create(name="ws-shouters", word="OPEN-SESAME")
    return WebSocketChannel.objects.create(name="shout-ws", path="/ws/shout", security=definition,
                                           service=DeployedService.objects.get(name="plugin-demo.whoami"))


def test_a_plugged_in_security_type_protects_a_websocket_channel(shout_ws: WebSocketChannel) -> None:
    from integration.channels.websocket import websocket_application

    application = websocket_application()

    async def scenario() -> None:
        # Credentials in the upgrade request's headers: the type says they are there.
        socket = await open_socket(application, "/ws/shout", {"X-Shout": "OPEN-SESAME"})
        reply = await request(socket, "1", {})
        assert (reply["status"], reply["response"]) == (200, {"user": "shouter", "security": "ws-shouters"})
        await hang_up(socket)
        # Or in the first message: the type turns the token into its header.
        socket = await open_socket(application, "/ws/shout")
        await send(socket, {"type": "auth", "token": "OPEN-SESAME"})
        assert (await receive(socket))["type"] == "authenticated"
        await hang_up(socket)
        socket = await open_socket(application, "/ws/shout")
        await send(socket, {"type": "auth", "token": "whisper"})
        assert (await receive(socket))["status"] == 403
        assert (await closed_with(socket))[0] == 4403

    async_to_sync(scenario)()


# --- The connection type through self.out --------------------------------------------------------------


@pytest.mark.django_db
def test_a_plugged_in_connection_type_is_reached_through_self_out(plugin_services: None) -> None:
    EchoConnection.objects.create(name="backend", prefix="echo> ")
    result = invoke("plugin-demo.use-echo", {"name": "backend"})
    assert result.payload == {"out": "echo> hi", "alias": "echo> there", "outgoing": "echo> !"}


@pytest.mark.django_db
def test_self_out_names_the_kind_and_the_connection_when_it_is_missing_or_inactive(plugin_services: None) -> None:
    with pytest.raises(SwitchboardError, match="No outgoing echo connection is named `nowhere`") as missing:
        invoke("plugin-demo.use-echo", {"name": "nowhere"})
    assert missing.value.status_code == 500
    EchoConnection.objects.create(name="asleep", is_active=False)
    with pytest.raises(ServiceUnavailable, match="Outgoing echo connection `asleep` is inactive"):
        invoke("plugin-demo.use-echo", {"name": "asleep"})
    with pytest.raises(AttributeError, match="No outgoing connection type `smtp` is installed"):
        _ = snapshot.current().outgoing.namespace.smtp


@pytest.mark.django_db
def test_an_unchanged_connection_is_carried_over_and_a_changed_one_rebuilt_and_closed(
    db: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_types, "RETIRE_AFTER", 0)  # at once here; a minute in production
    row = EchoConnection.objects.create(name="kept", prefix="a ")
    EchoConnection.objects.create(name="changed", prefix="b ")
    first = snapshot.current()
    kept, changed = first.outgoing.get("echo", "kept"), first.outgoing.get("echo", "changed")
    EchoConnection.objects.filter(name="changed").update(prefix="c ")
    row.save()  # an unchanged save bumps the version: the snapshot is rebuilt
    second = snapshot.current()
    assert second.version > first.version
    assert second.outgoing.get("echo", "kept") is kept and not kept.closed
    rebuilt = second.outgoing.get("echo", "changed")
    assert isinstance(rebuilt, EchoClient) and rebuilt is not changed and rebuilt.call("x") == "c x"
    assert changed.closed


@pytest.mark.django_db
def test_a_replaced_connection_stays_open_for_requests_still_using_it(db: None) -> None:
    EchoConnection.objects.create(name="busy", prefix="a ")
    old = snapshot.current().outgoing.get("echo", "busy")
    EchoConnection.objects.filter(name="busy").update(prefix="b ")
    EchoConnection.objects.get(name="busy").save()
    assert snapshot.current().outgoing.get("echo", "busy") is not old
    assert not old.closed and old.call("x") == "a x"  # closed only RETIRE_AFTER seconds later


# --- Bad input: twice, removed, not allowed ------------------------------------------------------------


def test_a_type_registered_twice_is_an_error_naming_it(restore_registries: None) -> None:
    shout_type = security.get("shout")
    assert shout_type is not None
    with pytest.raises(ImproperlyConfigured, match="Security type `shout` is registered twice"):
        security.register(dataclasses.replace(shout_type, model="plugin_app.Other"))
    with pytest.raises(ImproperlyConfigured, match="registered as two security types"):
        security.register(dataclasses.replace(shout_type, name="shout-again"))
    echo = next(t for t in connection_types.types() if t.kind == "echo")
    with pytest.raises(ImproperlyConfigured, match="Connection type `echo` is registered twice"):
        connection_types.register(echo)


@pytest.mark.django_db
def test_a_channel_whose_security_type_was_removed_answers_503_and_the_others_keep_working(
    shout_rest: RestChannel, make_channel: Any, restore_registries: None, caplog: pytest.LogCaptureFixture,
) -> None:
    make_channel("/plugin/open", "plugin-demo.whoami", name="open")
    security.unregister("shout")
    snapshot.reset()
    client = Client()
    answer = client.get("/plugin/whoami", HTTP_X_SHOUT="HELLO")
    assert answer.status_code == 503
    body = answer.json()
    assert body["cid"] == answer["X-Zato-CID"] and "security definition cannot be used" in body["details"]
    assert "Security type `shout` is not installed" in caplog.text
    assert client.get("/plugin/open").status_code == 200
    # Saving a channel with it is refused, naming the type.
    channel = RestChannel(name="again", url_path="/plugin/again", security=shout_rest.security,
                          service=shout_rest.service)
    with pytest.raises(ValidationError, match="Security type `shout` is not installed"):
        channel.full_clean()


@pytest.mark.django_db
def test_a_definition_type_a_channel_kind_does_not_allow_is_refused_on_save_and_at_start_up(
    shout: ShoutDefinition, plugin_services: None, restore_registries: None,
) -> None:
    channel = WebSocketChannel.objects.create(name="loud", path="/ws/loud", security=shout,
                                              service=DeployedService.objects.get(name="plugin-demo.whoami"))
    rest_only = dataclasses.replace(security.get("shout"), channel_kinds=frozenset({security.REST}))
    security.unregister("shout")
    security.register(rest_only)
    snapshot.reset()
    with pytest.raises(ValidationError, match="Shouted word definitions cannot protect websocket channels"):
        channel.full_clean()
    compiled = snapshot.current().websockets.get("/ws/loud")
    assert compiled is not None and compiled.security is None
    assert "cannot protect websocket channels" in compiled.security_problem
