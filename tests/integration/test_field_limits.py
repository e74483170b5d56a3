"""Whole-number settings of the management API's models: the overflow class, bounded with clear messages.

On PostgreSQL a ``PositiveIntegerField`` is a 32-bit column, and values over 2,147,483,647
were refused (or, where nothing checked first, a 500 ``integer out of range``); on SQLite
the same values were stored. Now every such field has the same bound on every database,
plus a tighter one where the platform needs it (a WebSocket message is held whole in
daphne's memory, so ``max_message_size`` stops at 64 MiB). Each refusal is a 400 naming
the field, and nothing is saved. Scheduler jobs: ``tests/scheduling/test_hostile_fields.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import JWTDefinition
from connections.models import VaultConnection
from integration.models import MAX_LIMIT, MAX_WEBSOCKET_MESSAGE_SIZE, WebSocketChannel

pytestmark = pytest.mark.django_db
API = "/manage/api/v1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_message_size", MAX_WEBSOCKET_MESSAGE_SIZE + 1, "At most 67108864 bytes (64 MiB); send larger data "
                                                             "over a REST channel."),
        ("max_message_size", 2**31, None),  # PostgreSQL's own bound answers first there
        ("new_token_wait_time", 2**40, None),
        ("token_ttl", 10**30, None),
        ("idle_timeout", 2**31, None),
        ("max_messages_per_second", 2**31, None),
    ],
)
def test_a_websocket_channel_limit_over_its_bound_is_400_naming_the_field(api, builtins, field, value,
                                                                          message) -> None:
    response = api.post(f"{API}/channels/websocket/", {"name": "big", "path": "/ws/big", "service": "demo.echo",
                                                       field: value}, format="json")
    assert response.status_code == 400, response.content
    details = response.json()["details"]
    assert list(details) == [field]
    if message is not None:
        assert details[field] == [message]
    assert not WebSocketChannel.objects.exists()


def test_a_websocket_channel_at_its_bounds_is_saved(api, builtins) -> None:
    fields: dict[str, Any] = {"max_message_size": MAX_WEBSOCKET_MESSAGE_SIZE, "new_token_wait_time": MAX_LIMIT,
                              "token_ttl": MAX_LIMIT, "idle_timeout": MAX_LIMIT, "max_messages_per_second": MAX_LIMIT}
    response = api.post(f"{API}/channels/websocket/", {"name": "big", "path": "/ws/big", "service": "demo.echo",
                                                       **fields}, format="json")
    assert response.status_code == 201, response.content
    assert {key: response.json()[key] for key in fields} == fields


def test_the_model_applies_the_bound_whatever_the_database(builtins) -> None:
    """On SQLite nothing but this bound stops 2**40 (the column holds 64 bits): same rule as PostgreSQL."""
    from django.core.exceptions import ValidationError

    from integration.models import DeployedService

    channel = WebSocketChannel(name="big", path="/ws/big", service=DeployedService.objects.get(name="demo.echo"),
                               token_ttl=2**31)
    with pytest.raises(ValidationError) as refused:
        channel.clean()
    assert refused.value.message_dict == {"token_ttl": ["At most 2147483647 seconds."]}


@pytest.mark.parametrize("ttl", [2**31, 10**30])
def test_a_jwt_ttl_over_its_bound_is_400_naming_the_field(api, ttl) -> None:
    response = api.post(f"{API}/security/jwt/", {"name": "long", "username": "long", "ttl": ttl}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["details"]) == ["ttl"]
    assert not JWTDefinition.objects.exists()


def test_a_jwt_ttl_bound_holds_in_the_admin_model_check_too() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        JWTDefinition(name="long", username="long", ttl=2**31).clean()
    assert refused.value.message_dict == {"ttl": ["At most 2147483647 seconds (about 68 years)"]}


@pytest.mark.parametrize(("field", "value"), [("timeout", 10**30), ("cache_ttl", 10**30), ("timeout", -1)])
def test_vault_times_over_their_bounds_are_400_naming_the_field(api, field, value) -> None:
    response = api.post(f"{API}/security/vault/", {"name": "v", "url": "http://127.0.0.1:8200", field: value},
                        format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["details"]) == [field]
    assert not VaultConnection.objects.exists()
