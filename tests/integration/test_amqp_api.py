"""API resources of file and AMQP channels and AMQP connections; the raw-input parsers under Hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connections.models import AMQPBroker
from integration.channels.amqp import MalformedMessage, parse_body
from integration.channels.files import CompiledFileChannel

API = "/manage/api/v1/"


@pytest.mark.django_db
def test_brokers_keep_their_password_secret_and_answer_a_ping(api: Any) -> None:
    created = api.post(f"{API}connections/amqp/", {"name": "local", "host": "127.0.0.1", "password": "guest"},
                       format="json")
    assert created.status_code == 201, created.content
    assert "password" not in created.json() and created.json()["has_password"] is True
    assert AMQPBroker.objects.get().get_password() == "guest"
    pk = created.json()["id"]
    pinged = api.post(f"{API}connections/amqp/{pk}/ping/")
    assert pinged.status_code == 200 and pinged.json()["ok"] is True
    found = api.get(f"{API}connections/amqp/?search=loc")
    assert [row["name"] for row in found.json()["results"]] == ["local"]


@pytest.mark.django_db
def test_channels_and_outgoing_are_created_and_bad_ones_refused_naming_the_field(api: Any, builtins: None) -> None:
    api.post(f"{API}connections/amqp/", {"name": "local", "host": "127.0.0.1"}, format="json")
    service = "demo.echo"
    ok = api.post(f"{API}channels/amqp/", {"name": "orders", "broker": "local", "queue": "orders",
                                            "service": service}, format="json")
    bad = api.post(f"{API}channels/amqp/", {"name": "x", "broker": "local", "queue": "amq.nope",
                                             "service": service}, format="json")
    assert ok.status_code == 201, ok.content
    assert bad.status_code == 400 and "queue" in str(bad.json())
    out = api.post(f"{API}outgoing/amqp/", {"name": "out", "broker": "local", "priority": 12}, format="json")
    assert out.status_code == 400 and "priority" in str(out.json())
    files = api.post(f"{API}channels/file/", {"name": "inbox", "directory": "relative/dir", "service": service},
                     format="json")
    assert files.status_code == 400 and "directory" in str(files.json())
    moved = api.post(f"{API}channels/file/", {"name": "inbox", "directory": "/srv/in", "service": service,
                                              "after_success": "move"}, format="json")
    assert moved.status_code == 400 and "done_directory" in str(moved.json())
    good = api.post(f"{API}channels/file/", {"name": "inbox", "directory": "/srv/in", "service": service,
                                             "patterns": "*.csv *.json"}, format="json")
    assert good.status_code == 201, good.content
    assert api.get(f"{API}channels/file/?search=srv").json()["count"] == 1


@given(st.binary(max_size=200), st.sampled_from(["json", "text", "bytes"]))
def test_any_amqp_body_is_parsed_or_refused_with_a_reason(body: bytes, data_format: str) -> None:
    try:
        parse_body(body, data_format)
    except MalformedMessage as exc:
        assert str(exc)


@given(st.text(max_size=60), st.booleans())
def test_any_path_is_matched_or_not_without_an_error(name: str, recursive: bool) -> None:
    channel = CompiledFileChannel(
        id=1, name="c", is_active=True, directory="/in", patterns=("*.csv", "[a-z]*"), recursive=recursive,
        events=frozenset({"created"}), service_name="s", service=None, pass_contents=False, max_contents_size=1,
        pass_event=True, after_success="leave", done_directory="/in/done", after_failure="leave",
        error_directory="", stable_seconds=1.0, use_polling=False)
    result = channel.matches("/in/" + name)
    assert isinstance(result, bool)
    if recursive:
        assert not channel.matches("/in/done/a.csv")
