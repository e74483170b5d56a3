"""Management API ``channels/websocket/``: CRUD like ``channels/rest/``, the connected clients, disconnecting one."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import JWTDefinition
from integration import push as pushes
from integration.models import DeployedService, WebSocketChannel, WebSocketClient
from tests.conftest import api_client_for
from tests.integration.layer_helpers import received_by_group, use_test_layer

pytestmark = pytest.mark.django_db
API = "/manage/api/v1/channels/websocket"


def assert_api_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["result"] == "Error" and re.fullmatch(r"[0-9a-f]{24}", body["cid"])
    assert response["X-Zato-CID"] == body["cid"]
    return body


@pytest.fixture
def browsers(db: None) -> JWTDefinition:
    return JWTDefinition.objects.create(name="browsers", username="browser-user")


def make_ws(name: str, path: str, **fields: Any) -> WebSocketChannel:
    return WebSocketChannel.objects.create(name=name, path=path, service=DeployedService.objects.get(name="demo.echo"),
                                           **fields)


def connect_client(channel: WebSocketChannel, username: str = "ann", *, stale: bool = False) -> WebSocketClient:
    """A client row as a server writes it; ``stale``: its server stopped reporting (it died)."""
    seen = timezone.now() - (dt.timedelta(hours=1) if stale else dt.timedelta())
    return WebSocketClient.objects.create(channel=channel, client_id=uuid.uuid4().hex, username=username,
                                          remote_addr="10.0.0.7", server_host="web-1", server_pid=4242,
                                          server_id="a" * 32, last_seen=seen, messages_in=3, messages_out=5)


def test_it_creates_reads_updates_and_deletes_a_websocket_channel(api, builtins, browsers) -> None:
    created = api.post(f"{API}/", {
        "name": "orders", "path": " /ws/orders ", "service": "demo.echo", "security": "browsers",
        "allowed_services": ["demo.hello", "zato.ping", "demo.hello"], "idle_timeout": 60,
        "pushes": "Order status changes",
    }, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body == {
        "id": body["id"], "name": "orders", "is_active": True, "path": "/ws/orders", "service": "demo.echo",
        "security": "browsers", "allowed_services": ["demo.hello", "zato.ping"], "new_token_wait_time": 5,
        "token_ttl": 3600, "idle_timeout": 60, "max_message_size": 65536, "max_messages_per_second": 50,
        "pushes": "Order status changes", "connected_clients": 0, "created": body["created"],
        "updated": body["updated"],
    }
    channel = WebSocketChannel.objects.get(pk=body["id"])
    assert channel.allowed_services == "demo.hello\nzato.ping"  # one name per line in the row

    connect_client(channel)
    connect_client(channel, "bob")
    connect_client(channel, "gone", stale=True)  # a dead server's row is not counted
    read = api.get(f"{API}/{body['id']}/")
    assert read.json()["connected_clients"] == 2

    patched = api.patch(f"{API}/{body['id']}/", {"security": None, "is_active": False, "allowed_services": []},
                        format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["security"] is None and patched.json()["allowed_services"] == []
    assert patched.json()["path"] == "/ws/orders" and patched.json()["connected_clients"] == 2
    assert api.delete(f"{API}/{body['id']}/").status_code == 204
    assert not WebSocketChannel.objects.exists() and not WebSocketClient.objects.exists()


@pytest.mark.parametrize(("fields", "bad_field"), [
    ({"path": "ws/no-slash"}, "path"),
    ({"path": "/admin/socket"}, "path"),
    ({"path": "/ws/{user_id}"}, "path"),
    ({"service": "no.such-service"}, "service"),
    ({"security": "no-such-definition"}, "security"),
    ({"allowed_services": ["two words"]}, "allowed_services"),
    ({"allowed_services": "not a list"}, "allowed_services"),
    ({"idle_timeout": -1}, "idle_timeout"),
])
def test_invalid_channels_are_400_naming_the_field_and_nothing_is_saved(api, builtins, fields, bad_field) -> None:
    body = assert_api_error(api.post(f"{API}/", {"name": "x", "path": "/ws/x", "service": "demo.echo", **fields},
                                     format="json"), 400)
    assert bad_field in body["details"], body
    assert not WebSocketChannel.objects.exists()


def test_names_and_paths_are_unique(api, builtins) -> None:
    make_ws("orders", "/ws/orders")
    same_path = assert_api_error(api.post(f"{API}/", {"name": "other", "path": "/ws/orders", "service": "demo.echo"},
                                          format="json"), 400)
    assert "path" in same_path["details"]
    same_name = assert_api_error(api.post(f"{API}/", {"name": "orders", "path": "/ws/b", "service": "demo.echo"},
                                          format="json"), 400)
    assert "name" in same_name["details"]


def test_channels_are_filtered_and_listing_costs_the_same_queries_at_any_size(api, builtins, browsers) -> None:
    make_ws("orders", "/ws/orders", security=browsers)
    make_ws("alerts", "/ws/alerts", is_active=False)

    def names(query: str) -> list[str]:
        return [channel["name"] for channel in api.get(f"{API}/{query}").json()["results"]]

    assert names("") == ["alerts", "orders"]
    assert names("?is_active=false") == ["alerts"]
    assert names("?security=browsers") == ["orders"]
    assert names("?search=ALER") == ["alerts"]
    assert names("?service=demo.hello") == []

    with CaptureQueriesContext(connection) as few:
        api.get(f"{API}/")
    for n in range(20):
        connect_client(make_ws(f"bulk-{n:02}", f"/ws/bulk/{n}", security=browsers))
    with CaptureQueriesContext(connection) as many:
        listing = api.get(f"{API}/")
    assert len(many) == len(few)  # no query per channel for its service, definition or client count
    assert listing.json()["count"] == 22
    counts = {channel["name"]: channel["connected_clients"] for channel in listing.json()["results"]}
    assert counts["orders"] == 0 and {counts[f"bulk-{n:02}"] for n in range(20)} == {1}


def test_it_lists_a_channels_live_clients_only(api, builtins) -> None:
    channel, other = make_ws("orders", "/ws/orders"), make_ws("alerts", "/ws/alerts")
    ann = connect_client(channel, "ann")
    connect_client(channel, "bob")
    connect_client(channel, "gone", stale=True)
    connect_client(other, "carl")
    listing = api.get(f"{API}/{channel.pk}/clients/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 2
    assert {client["username"] for client in listing.json()["results"]} == {"ann", "bob"}
    first = next(client for client in listing.json()["results"] if client["username"] == "ann")
    assert first == {
        "client_id": ann.client_id, "username": "ann", "remote_addr": "10.0.0.7",
        "connected_at": first["connected_at"], "last_seen": first["last_seen"], "messages_in": 3,
        "messages_out": 5, "server_host": "web-1", "server_pid": 4242,
    }
    assert [c["username"] for c in api.get(f"{API}/{channel.pk}/clients/?username=bob").json()["results"]] == ["bob"]
    assert_api_error(api.get(f"{API}/999999/clients/"), 404)


def test_disconnecting_a_client_asks_its_connection_to_close(api, builtins, settings) -> None:
    use_test_layer(settings, "test-wsapi")
    channel, other = make_ws("orders", "/ws/orders"), make_ws("alerts", "/ws/alerts")
    ann = connect_client(channel, "ann")

    response, event = received_by_group(pushes.client_group(ann.client_id),
                                        lambda: api.delete(f"{API}/{channel.pk}/clients/{ann.client_id}/"))
    assert response.status_code == 202, response.content
    assert response.json() == {"client_id": ann.client_id, "disconnecting": True}
    assert event == {"type": "ws.disconnect"}  # the consumer closes with 4005 when it gets this
    # Only a client connected to that channel, now.
    assert_api_error(api.delete(f"{API}/{other.pk}/clients/{ann.client_id}/"), 404)
    gone = connect_client(channel, "gone", stale=True)
    assert_api_error(api.delete(f"{API}/{channel.pk}/clients/{gone.client_id}/"), 404)


def test_an_unreachable_channel_layer_is_503(api, builtins, settings) -> None:
    from tests.servers.procs import free_port

    channel = make_ws("orders", "/ws/orders")
    ann = connect_client(channel)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]}}}
    body = assert_api_error(api.delete(f"{API}/{channel.pk}/clients/{ann.client_id}/"), 503)
    assert body["details"].startswith("The channel layer cannot be reached")


def test_staff_need_the_channel_permissions(bob, builtins) -> None:
    from django.contrib.auth.models import Permission

    channel = make_ws("orders", "/ws/orders")
    ann = connect_client(channel)
    client = api_client_for(bob)
    assert_api_error(client.get(f"{API}/"), 403)
    assert_api_error(client.get(f"{API}/{channel.pk}/clients/"), 403)
    bob.user_permissions.add(Permission.objects.get(codename="view_websocketchannel"))
    assert client.get(f"{API}/").status_code == 200
    assert client.get(f"{API}/{channel.pk}/clients/").json()["count"] == 1
    # Disconnecting is changing the channel's state, not deleting it; viewing is not enough.
    assert_api_error(client.delete(f"{API}/{channel.pk}/clients/{ann.client_id}/"), 403)
    assert_api_error(client.post(f"{API}/", {"name": "x", "path": "/ws/x", "service": "demo.echo"}, format="json"),
                     403)
