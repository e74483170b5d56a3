"""Hypothesis: every parser of raw input on the HTTP side answers, and never with a crash.

For each parser the property is the same: whatever arrives, the answer is a value or the
parser's own error (which the channel turns into a 4xx in the one error shape), never an
unhandled exception or a 500. Covered here: JSON (``integration.jsonio``), REST body
parsing for every data format and content type (``_parse_body``), Accept matching and path
templates (``integration.channels.routing`` and the channel model's path check), the
whole REST dispatch through Django, and the ``/zato/jwt/log-in`` body. WebSocket messages:
``test_websocket_hypothesis.py``; credential headers: ``tests/accounts/test_credentials_hypothesis.py``;
scheduler fields: ``tests/scheduling/test_fields_hypothesis.py``.

Budgets are small and there are no deadlines: the suite runs on a loaded 2-core machine,
and these tests look for crashes, not for speed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from accounts.models import JWTDefinition
from integration import jsonio
from integration.channels.rest import _parse_body
from integration.channels.routing import AcceptPattern, CompiledChannel, RoutingTable, parse_accept
from integration.errors import MethodNotAllowed, NotAcceptable, NotFound, SwitchboardError
from integration.models import RestChannel
from tests.strategies import bodies, json_ish, json_values, scalars

FAST = settings(max_examples=300, deadline=None, database=None)
# Tests that go through Django and the database: fewer examples; fixtures are set up once per test.
THOROUGH = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

def nesting(value: Any) -> int:
    """How deep arrays and objects nest in a Python value (the reference for ``jsonio.depth``)."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


# --- JSON -------------------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500), json_ish, json_ish.map(str.encode)))
@example("[" * 1000 + "]" * 1000)
@example(b"1" * 5000)
@example('"\\ud800"')
@example('"' + '\\"' * 300 + "[" * 200)
@example(b"\xff\xfe[\x00]\x00")  # UTF-16 with a BOM
def test_jsonio_answers_anything_with_a_value_or_invalid_json(data: bytes | str) -> None:
    try:
        value = jsonio.loads(data, "body")
    except jsonio.InvalidJSON as exc:
        assert exc.status_code == 400 and str(exc.details).startswith("Invalid JSON in body: ")
        return
    # Whatever was accepted can be sent back as JSON, in UTF-8, within the limits.
    assert nesting(value) <= jsonio.MAX_DEPTH
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


@FAST
@given(json_values, st.booleans())
def test_jsonio_reads_back_what_json_writes(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert jsonio.loads(text) == value
    assert jsonio.loads(text.encode("utf-8")) == value


@FAST
@given(json_values, st.sampled_from([(", ", ": "), (",", ":")]), st.booleans())
@example({"a": '[[{\\"', "b": [[["\\\\"]]]}, (",", ":"), False)
def test_depth_counts_only_brackets_outside_strings(value: Any, separators: tuple[str, str], ascii_only: bool) -> None:
    assert jsonio.depth(json.dumps(value, separators=separators, ensure_ascii=ascii_only)) == nesting(value)


@FAST
@given(st.integers(jsonio.MAX_DEPTH - 3, jsonio.MAX_DEPTH + 3), json_values, st.lists(st.booleans(), min_size=110,
                                                                                         max_size=110))
def test_the_nesting_limit_is_exact(levels: int, inner: Any, as_object: list[bool]) -> None:
    value = inner
    for wrap in as_object[:levels]:
        value = {"k": value} if wrap else [value]
    total = nesting(value)
    try:
        jsonio.loads(json.dumps(value))
    except jsonio.InvalidJSON as exc:
        assert total > jsonio.MAX_DEPTH and "nested more than 100 levels" in str(exc.details)
    else:
        assert total <= jsonio.MAX_DEPTH


@FAST
@given(st.integers(1, 6000), st.booleans())
def test_the_digit_limit_is_exact(digits: int, negative: bool) -> None:
    text = ("-" if negative else "") + "9" * digits
    try:
        value = jsonio.loads(text)
    except jsonio.InvalidJSON as exc:
        assert digits > jsonio.MAX_INT_DIGITS and "more than 4300 digits" in str(exc.details)
    else:
        assert digits <= jsonio.MAX_INT_DIGITS and value == int(text)


# --- REST body parsing ------------------------------------------------------------------------------

content_types = st.one_of(
    st.sampled_from(["", "application/json", "application/json; charset=utf-8", "text/plain",
                     "application/x-www-form-urlencoded", "application/vnd.api+json", "image/png",
                     "multipart/form-data; boundary=x", "text/xml", "APPLICATION/JSON", ";;;", "application/"]),
    st.text(max_size=40),
)


@FAST
@given(st.sampled_from(["json", "text", "xml"]), content_types, bodies)
def test_rest_body_parsing_gives_the_payload_or_a_4xx(data_format: str, content_type: str, body: bytes) -> None:
    try:
        payload, raw = _parse_body(data_format, content_type, body)
    except SwitchboardError as exc:
        assert exc.status_code in (400, 415), (exc.status_code, exc.details)
        return
    if data_format == "json":
        assert raw == body and payload == (jsonio.loads(body) if body else None)
    else:
        assert payload == raw == body.decode("utf-8")


# --- Accept matching and path templates -------------------------------------------------------------

accept_headers = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.tuples(st.sampled_from(["application/json", "text/*", "*/*", "*", "text/html", "application/xml",
                                   "application/pdf", "image/png", "", "a/b/c", "/"]),
                  st.one_of(st.none(), st.sampled_from(["1", "0", "0.5", "nan", "inf", "-1", "1e999", "x", ""]))),
        max_size=5,
    ).map(lambda parts: ", ".join(media if q is None else f"{media};q={q}" for media, q in parts)),
)
CHANNEL_ACCEPTS = ["", "application/json", "text/*", "application/*+json", "application/pdf"]


def compiled(name: str, url_path: str, method: str, accept: str) -> CompiledChannel:
    return CompiledChannel(
        id=hash(name) & 0xFFFF, name=name, is_active=True, url_path=url_path, method=method,
        accepts=tuple(AcceptPattern.parse(part) for part in (accept.split(",") if accept else [""])),
        service_name="demo.echo", service=None, security=None, has_security=False, data_format="json",
        merge_url_params=True,
    )


TABLE = RoutingTable([
    compiled(f"c{index}", path, method, accept)
    for index, (path, method, accept) in enumerate(
        (path, method, accept)
        for path in ["/api/user", "/api/user/{id}", "/api/user/me", "/{tenant}/orders/{order_id}", "/files/{name}"]
        for method in ["", "GET", "POST"]
        for accept in CHANNEL_ACCEPTS
    )
])
segments = st.text(alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), min_size=1,
                   max_size=12)


@FAST
@given(accept_headers)
def test_accept_parsing_never_fails_and_keeps_q_between_0_and_1(header: str) -> None:
    ranges = parse_accept(header)
    assert ranges  # an empty or unusable header means */*
    for main, sub, q, specificity in ranges:
        assert isinstance(main, str) and sub and 0.0 <= q <= 1.0 and specificity in (0, 1, 2)


@FAST
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "BREW"]),
       st.one_of(st.text(max_size=40).map(lambda text: "/" + text),
                 st.builds(lambda a, b: f"/api/user/{a}", segments, segments),
                 st.builds(lambda a, b: f"/{a}/orders/{b}", segments, segments)),
       accept_headers)
def test_routing_gives_a_channel_or_404_405_406(method: str, path: str, accept: str) -> None:
    try:
        channel, params = TABLE.match(method, path, accept)
    except (NotFound, MethodNotAllowed, NotAcceptable):
        return
    assert channel.method in (method, "")
    assert all(isinstance(value, str) and "/" not in value for value in params.values())


@FAST
@given(segments, segments)
def test_a_template_hands_back_the_path_segments_it_matched(tenant: str, order: str) -> None:
    channel, params = TABLE.match("GET", f"/{tenant}/orders/{order}", "application/json")
    assert params == {"tenant": tenant, "order_id": order}
    assert channel.url_path == "/{tenant}/orders/{order_id}"


@FAST
@given(st.one_of(st.text(max_size=60), st.text(alphabet="/{}abc_1-.%:", max_size=40).map(lambda text: "/" + text)),
       st.sampled_from(["", "GET", "get", "BREW"]), st.one_of(st.text(max_size=30), st.sampled_from(CHANNEL_ACCEPTS)))
def test_the_channel_model_accepts_a_path_or_names_the_field(url_path: str, method: str, accept: str) -> None:
    channel = RestChannel(name="fuzz", url_path=url_path, method=method, accept=accept)
    try:
        channel.clean()
    except ValidationError as exc:
        assert set(exc.message_dict) <= {"url_path", "method", "accept"}
        return
    # A path the model accepts compiles into a route that matches itself with each {param} filled in,
    # and the parameters it hands back put the path together again ({a}{b} may split differently).
    template = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
    filled = template.sub(lambda match: f"v-{match.group(1)}", channel.url_path)
    table = RoutingTable([compiled("fuzz", channel.url_path, channel.method, channel.accept)])
    found, params = table.match(channel.method or "GET", filled, "*/*")
    assert found.url_path == channel.url_path
    assert set(params) == set(channel.path_params)
    assert template.sub(lambda match: params[match.group(1)], channel.url_path) == filled


# --- The whole REST dispatch, and JWT log-in --------------------------------------------------------


@pytest.fixture
def fuzz_channels(make_channel: Any) -> None:
    make_channel("/fuzz/echo", "demo.echo")
    make_channel("/fuzz/items/{item_id}", "demo.echo", method="GET", accept="application/json")
    make_channel("/fuzz/items/{item_id}", "demo.echo", method="POST", data_format="text")
    make_channel("/fuzz/doc", "demo.text-any", accept="text/*", data_format="text")
    make_channel("/fuzz/xml", "demo.echo", data_format="xml", accept="application/xml")


def assert_one_shape(response: Any) -> None:
    assert response.status_code != 500, response.content[:300]
    assert re.fullmatch(r"[0-9a-f]{24}", response["X-Zato-CID"])
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert body["result"] == "Error" and body["cid"] == response["X-Zato-CID"]


@pytest.mark.django_db
@THOROUGH
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]),
       path=st.one_of(st.sampled_from(["/fuzz/echo", "/fuzz/doc", "/fuzz/xml", "/fuzz/nothing"]),
                      segments.map(lambda item: "/fuzz/items/" + item)),
       content_type=content_types, accept=accept_headers, body=bodies)
def test_a_rest_request_never_gets_a_500(client, fuzz_channels, method, path, content_type, accept, body) -> None:
    assume("\x00" not in content_type and "\n" not in content_type and "\r" not in content_type)
    response = client.generic(method, path.encode("utf-8").decode("latin-1"), data=body, content_type=content_type,
                              HTTP_ACCEPT=accept.encode("utf-8").decode("latin-1"))
    assert_one_shape(response)


login_bodies = st.one_of(
    bodies,
    st.fixed_dictionaries({}, optional={"username": scalars | json_values, "password": scalars | json_values,
                                        "totp_code": scalars}).map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b'{"username": "frontend", "password": "jwt-secret-1"}']),
)


@pytest.mark.django_db
@THOROUGH
@given(body=login_bodies, content_type=content_types)
def test_jwt_log_in_answers_any_body_without_a_500(client, body: bytes, content_type: str) -> None:
    if not JWTDefinition.objects.filter(username="frontend").exists():
        definition = JWTDefinition(name="browsers", username="frontend", ttl=60)
        definition.set_password("jwt-secret-1")
        definition.save()
    assume("\x00" not in content_type and "\n" not in content_type and "\r" not in content_type)
    response = client.post("/zato/jwt/log-in", body, content_type=content_type)
    # 429: the brute-force limit (issue 11, item 3), when a run of wrong passwords reaches it.
    assert response.status_code in (200, 400, 401, 413, 429), response.content[:300]
    if response.status_code != 200:
        assert_one_shape(response)
