"""The admin for WebSocket channels and the live list of connected clients, with its Disconnect action."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from accounts.models import JWTDefinition
from integration import push as pushes
from integration.models import DeployedService, WebSocketChannel, WebSocketClient
from tests.integration.layer_helpers import received_by_group, use_test_layer

pytestmark = pytest.mark.django_db
CHANNELS = "/admin/integration/websocketchannel/"
CLIENTS = "/admin/integration/websocketclient/"


@pytest.fixture
def staff(admin_client_alice: Any, builtins: None) -> Any:
    return admin_client_alice


@pytest.fixture
def orders(builtins: None) -> WebSocketChannel:
    browsers = JWTDefinition.objects.create(name="browsers", username="browser-user")
    return WebSocketChannel.objects.create(name="orders", path="/ws/orders", security=browsers,
                                           service=DeployedService.objects.get(name="demo.echo"))


def connect_client(channel: WebSocketChannel, username: str, *, stale: bool = False) -> WebSocketClient:
    seen = timezone.now() - (dt.timedelta(hours=1) if stale else dt.timedelta())
    return WebSocketClient.objects.create(channel=channel, client_id=uuid.uuid4().hex, username=username,
                                          server_host="web-1", server_pid=4242, last_seen=seen, messages_in=7)


def rows(response: Any) -> list[str]:
    return [str(obj) for obj in response.context["cl"].result_list]


def test_the_channel_list_shows_path_service_security_and_live_clients(staff, orders) -> None:
    alerts = WebSocketChannel.objects.create(name="alerts", path="/ws/alerts",
                                             service=DeployedService.objects.get(name="demo.hello"))
    connect_client(orders, "ann")
    connect_client(orders, "bob")
    connect_client(orders, "ghost", stale=True)  # its server died: not counted
    zeta = WebSocketChannel.objects.create(name="zeta", path="/ws/zeta", service=orders.service)
    connect_client(zeta, "zoe")
    response = staff.get(CHANNELS)
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'field-client_count"><a href="/admin/integration/websocketclient/\?channel__id__exact='
                     rf'{orders.pk}">2</a>', page)
    assert re.search(r'field-security_display"><span title="JWT">browsers</span>', page)
    assert rows(staff.get(CHANNELS, {"q": "hello"})) == ["alerts"]  # by service
    assert rows(staff.get(CHANNELS, {"q": "browsers"})) == ["orders"]  # by security definition
    assert rows(staff.get(CHANNELS, {"security_type": "jwt"})) == ["orders"]
    assert rows(staff.get(CHANNELS, {"o": "-6"})) == ["orders", "zeta", "alerts"]  # by client count, descending
    change = staff.get(f"{CHANNELS}{alerts.pk}/change/")
    assert change.status_code == 200 and "0 connected now" in change.content.decode()
    assert staff.get(f"{CHANNELS}add/").status_code == 200


def test_a_channel_saved_in_the_admin_is_validated(staff, orders) -> None:
    form = {"name": "bad", "path": "/admin/x", "service": orders.service_id, "new_token_wait_time": 5,
            "token_ttl": 3600, "idle_timeout": 300, "max_message_size": 65536, "max_messages_per_second": 50}
    response = staff.post(f"{CHANNELS}add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert "which the platform reserves" in response.content.decode()
    saved = staff.post(f"{CHANNELS}add/", {**form, "path": "/ws/fine", "allowed_services": "demo.hello\r\n\r\n"})
    assert saved.status_code == 302
    assert WebSocketChannel.objects.get(name="bad").allowed_services == "demo.hello"


def test_the_client_list_shows_live_clients_only_and_cannot_add_or_edit(staff, orders) -> None:
    other = WebSocketChannel.objects.create(name="alerts", path="/ws/alerts", service=orders.service)
    ann = connect_client(orders, "ann")
    connect_client(orders, "ghost", stale=True)
    connect_client(other, "carl")
    response = staff.get(CLIENTS)
    assert response.status_code == 200
    assert sorted(obj.username for obj in response.context["cl"].result_list) == ["ann", "carl"]
    page = response.content.decode()
    assert ann.client_id in page and "web-1 (pid 4242)" in page
    assert f"{CLIENTS}add/" not in page and f"{CLIENTS}{ann.pk}/change/" not in page
    assert staff.get(f"{CLIENTS}add/").status_code == 403
    assert [c.username for c in staff.get(CLIENTS, {"channel__id__exact": orders.pk}).context["cl"].result_list] \
        == ["ann"]
    assert [c.username for c in staff.get(CLIENTS, {"q": "carl"}).context["cl"].result_list] == ["carl"]
    # The channel filter offers the channels that have clients now, not every channel there is.
    WebSocketChannel.objects.create(name="empty", path="/ws/empty", service=orders.service)
    choices = [choice["display"] for spec in staff.get(CLIENTS).context["cl"].filter_specs
               for choice in spec.choices(staff.get(CLIENTS).context["cl"])]
    assert "empty" not in choices and {"orders", "alerts"} <= set(choices)


def test_disconnect_asks_each_selected_connection_to_close(staff, orders, settings) -> None:
    use_test_layer(settings, "test-wsadm")
    ann = connect_client(orders, "ann")

    def disconnect() -> Any:
        return staff.post(CLIENTS, {"action": "disconnect", "_selected_action": [ann.pk]}, follow=True)

    response, event = received_by_group(pushes.client_group(ann.client_id), disconnect)
    assert event == {"type": "ws.disconnect"}  # the consumer serving it closes with 4005
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Asked 1 client to disconnect (code 4005); they leave this list within a second or two."]


def test_an_unreachable_channel_layer_is_an_error_message_not_a_crash(staff, orders, settings) -> None:
    from tests.servers.procs import free_port

    ann = connect_client(orders, "ann")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]}}}
    response = staff.post(CLIENTS, {"action": "disconnect", "_selected_action": [ann.pk]}, follow=True)
    assert response.status_code == 200
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "error"
    assert str(message).startswith("Could not reach the channel layer for 1 of 1 clients: ")


def test_staff_without_the_channel_change_permission_get_no_disconnect(orders, bob, client, totp_device) -> None:
    from django.contrib.auth.models import Permission

    from tests.conftest import verified_login

    bob.user_permissions.add(*Permission.objects.filter(codename__in=["view_websocketclient",
                                                                      "view_websocketchannel"]))
    device, _ = totp_device(bob)
    verified_login(client, bob, device)
    connect_client(orders, "ann")
    response = client.get(CLIENTS)
    assert response.status_code == 200
    assert "disconnect" not in dict(response.context["cl"].model_admin.get_action_choices(response.wsgi_request))
