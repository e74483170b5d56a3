"""Admin listings that scale: page sizes, search and filters, constant queries, estimated counts, help texts.

Against the real PostgreSQL test database through Django's test client. Rows are made
with ``bulk_create`` where the model allows it (it skips ``RestChannel.save``'s
``full_clean``; the values here are valid), and with ``save()`` for the security
definitions, which are multi-table children that ``bulk_create`` cannot write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.admin import ChangePasswordForm
from accounts.models import ApiKey, BasicAuth, JWTDefinition, OAuthDefinition, SecurityDefinition, TechAccount
from connections.models import FtpConnection, LdapConnection, SftpConnection, VaultConnection
from integration.admin import InvokeForm
from integration.admin_base import DEFAULT_PAGE_SIZE, SizedChangeList
from integration.models import DeployedService, RestChannel, ServiceModule
from integration.signals import one_change

pytestmark = pytest.mark.django_db

OUR_APPS = {"integration", "accounts", "connections", "scheduling"}
CHANNELS_URL = "/admin/integration/restchannel/"
METHODS = ["GET", "POST", "PUT", "DELETE", ""]


@pytest.fixture
def staff(admin_client_alice: Any) -> Any:
    """Alice's admin client, logged in with her password and a TOTP code (``ADMIN_REQUIRE_TOTP`` is on)."""
    return admin_client_alice


@pytest.fixture
def crm_auth(basic_auth: Callable[..., BasicAuth]) -> BasicAuth:
    return basic_auth(name="crm-callers", username="crm")


@pytest.fixture
def channels(builtins: None, crm_auth: BasicAuth) -> Callable[[int, int], list[RestChannel]]:
    """``channels(n, start=0)`` adds n REST channels; every third is behind the CRM's Basic Auth."""
    service = DeployedService.objects.get(name="demo.get-customer")

    def _make(count: int, start: int = 0) -> list[RestChannel]:
        rows = [
            RestChannel(
                name=f"channel-{i:05d}",
                url_path=f"/api/things/{i:05d}",
                method=METHODS[i % len(METHODS)],
                service=service,
                security=crm_auth if i % 3 == 0 else None,
            )
            for i in range(start, start + count)
        ]
        return RestChannel.objects.bulk_create(rows)

    return _make


def shown(response: Any) -> list[str]:
    """The names of the rows the changelist page shows, in order."""
    return [str(obj) for obj in response.context["cl"].result_list]


# --- Page size ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [25, 100, 250])
def test_it_shows_the_page_size_asked_for(staff: Any, channels: Callable[..., Any], size: int) -> None:
    channels(300)
    response = staff.get(CHANNELS_URL, {"page_size": size})
    assert response.status_code == 200
    assert shown(response) == [f"channel-{i:05d}" for i in range(size)]
    # Page links keep the size; the size links go back to page one.
    assert f'href="?p=2&amp;page_size={size}"' in response.content.decode()
    assert 'href="?page_size=50"' in response.content.decode()


def test_it_shows_fifty_rows_by_default(staff: Any, channels: Callable[..., Any]) -> None:
    channels(120)
    response = staff.get(CHANNELS_URL)
    assert len(shown(response)) == DEFAULT_PAGE_SIZE == 50
    assert '<span class="this-page" aria-current="true">50</span>' in response.content.decode()


@pytest.mark.parametrize("value", ["abc", "7", "0", "-25", "1000", "", "25.0", "9" * 40])
def test_it_falls_back_to_the_default_size_on_a_size_not_offered(
    staff: Any, channels: Callable[..., Any], value: str
) -> None:
    channels(120)
    response = staff.get(CHANNELS_URL, {"page_size": value})
    assert response.status_code == 200  # not the "?e=1" redirect Django gives a bad filter
    assert len(shown(response)) == DEFAULT_PAGE_SIZE
    cl = response.context["cl"]
    assert not cl.has_active_filters
    assert "page_size" not in cl.get_query_string()  # links carry the default, not the bad value


def test_the_page_size_is_kept_across_pages_and_is_not_a_filter(staff: Any, channels: Callable[..., Any]) -> None:
    channels(300)
    response = staff.get(CHANNELS_URL, {"page_size": 100, "p": 2})
    assert shown(response) == [f"channel-{i:05d}" for i in range(100, 200)]
    assert not response.context["cl"].has_active_filters
    last = staff.get(CHANNELS_URL, {"page_size": 100, "p": 3})
    assert shown(last)[-1] == "channel-00299"


def test_the_size_links_keep_search_filters_and_sorting(staff: Any, channels: Callable[..., Any]) -> None:
    channels(300)
    response = staff.get(CHANNELS_URL, {"q": "channel-00", "method__exact": "GET", "o": "-1", "p": 2})
    links = {link["size"]: link["url"] for link in response.context["cl"].page_size_links}
    assert links[250] == "?method__exact=GET&o=-1&page_size=250&q=channel-00"  # and no p: back to page one
    followed = staff.get(CHANNELS_URL + links[25])
    assert len(shown(followed)) == 25
    assert shown(followed)[0] == "channel-00295"  # GET channels only, sorted by name descending


def test_every_listing_on_the_site_takes_a_page_size(staff: Any, builtins: None) -> None:
    """Third-party listings too (auth's, django-celery-beat's): the site mixes the behaviour into every admin."""
    assert len(admin.site._registry) > 10
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = staff.get(url, {"page_size": 25})
        assert response.status_code == 200, url
        cl = response.context["cl"]
        assert isinstance(cl, SizedChangeList), url
        assert cl.list_per_page == 25, url
        assert cl.model_admin.show_full_result_count is False, url


def test_every_admin_page_carries_the_branding_and_the_user_links(staff: Any) -> None:
    page = staff.get("/admin/").content.decode()
    assert "<title>Administration | Switchboard admin</title>" in page
    assert f'href="{reverse("admin:dashboard")}" id="nav-dashboard">Dashboard</a>' in page
    assert f'href="{reverse("admin:totp-enrol")}" id="nav-totp">Two-factor authentication</a>' in page
    assert "/static/switchboard/admin.css" in page
    assert staff.get("/static/switchboard/admin.css").status_code == 200


# --- Search and filters ----------------------------------------------------------------------


@pytest.fixture
def thousand(channels: Callable[..., Any]) -> None:
    channels(1000)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 1000),
        ({"q": "channel-0004"}, 10),  # by name: channel-00040 .. 00049
        ({"q": "/api/things/0099"}, 10),  # by URL path
        ({"q": "demo.get-customer"}, 1000),  # by service
        ({"q": "crm-callers"}, 334),  # by security definition: every third channel
        ({"q": "no-such-channel"}, 0),
        ({"method__exact": "GET"}, 200),
        ({"security_type": "none"}, 666),
        ({"security_type": "basic_auth"}, 334),
        ({"security_type": "jwt"}, 0),
        ({"security_type": "basic_auth", "method__exact": "GET"}, 67),  # i % 15 == 0
        ({"is_active__exact": "0"}, 0),
        ({"q": "channel-009", "method__exact": "POST"}, 20),  # 00900..00999 with i % 5 == 1
        ({"q": "demo.get-customer /api/things/0099"}, 10),  # every word must match, each in any column
        ({"q": "crm-callers /api/things/0099"}, 4),  # 00990, 00993, 00996, 00999
        ({"q": '"crm-callers"'}, 334),  # a quoted phrase
        ({"q": "CHANNEL-0004"}, 10),  # case does not matter
    ],
)
def test_it_searches_and_filters_a_thousand_channels(
    staff: Any, thousand: None, params: dict[str, str], expected: int
) -> None:
    response = staff.get(CHANNELS_URL, params)
    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.result_count == expected
    assert not cl.count_is_estimate
    assert len(shown(response)) == min(expected, DEFAULT_PAGE_SIZE)
    assert f"{expected} REST channel" in response.content.decode()


def test_a_search_narrows_the_list_and_pages_through_the_matches(staff: Any, thousand: None) -> None:
    first = staff.get(CHANNELS_URL, {"q": "channel-00", "page_size": 25})
    assert first.context["cl"].result_count == 1000
    narrowed = staff.get(CHANNELS_URL, {"q": "channel-001", "page_size": 25})
    assert narrowed.context["cl"].result_count == 100
    second = staff.get(CHANNELS_URL, {"q": "channel-001", "page_size": 25, "p": 2})
    assert shown(second) == [f"channel-{i:05d}" for i in range(125, 150)]
    assert 'href="?p=3&amp;page_size=25&amp;q=channel-001"' in second.content.decode()


def _cells(page: str, name: str) -> dict[str, str]:
    """The text of each cell of the listed row named ``name``, by column (``field-<column>`` classes)."""
    row = re.search(rf"<tr>(?:(?!</tr>).)*>{re.escape(name)}</a>.*?</tr>", page, re.S)
    assert row is not None, f"no row for {name}"
    cells = re.findall(r'<t[dh] class="field-([a-z_]+)[^"]*"[^>]*>(.*?)</t[dh]>', row.group(0), re.S)
    return {column: re.sub(r"<[^>]+>", "", value).strip() for column, value in cells}


def test_the_channel_list_shows_method_path_service_and_security(staff: Any, channels: Callable[..., Any]) -> None:
    channels(3)
    page = staff.get(CHANNELS_URL).content.decode()
    assert _cells(page, "channel-00000") == {
        "name": "channel-00000",
        "method_display": "GET",
        "url_path": "/api/things/00000",
        "accept_display": "any",
        "service": "demo.get-customer",
        "security_display": "crm-callers",  # the type is its title
        "is_active": "",
    }
    open_channel = _cells(page, "channel-00001")
    assert (open_channel["method_display"], open_channel["security_display"]) == ("POST", "-")


def test_a_definition_list_counts_the_channels_using_each(
    staff: Any, channels: Callable[..., Any], basic_auth: Callable[..., BasicAuth]
) -> None:
    channels(30)  # every third uses crm-callers
    basic_auth(name="unused", username="nobody")
    page = staff.get("/admin/accounts/basicauth/").content.decode()
    assert _cells(page, "crm-callers")["channel_count"] == "10"
    assert _cells(page, "unused")["channel_count"] == "0"
    by_count = staff.get("/admin/accounts/basicauth/", {"o": "-5"})  # the channel count column, descending
    assert shown(by_count)[0].startswith("crm-callers")


# --- Queries per page ------------------------------------------------------------------------


def _definitions(model: type[SecurityDefinition], **extra: Callable[[int], Any]) -> Callable[[int, int], None]:
    def _make(count: int, start: int) -> None:
        with one_change():
            for i in range(start, start + count):
                model(name=f"{model._meta.model_name}-{i:05d}", **{k: f(i) for k, f in extra.items()}).save()

    return _make


def _connections(model: type[Any], **fields: Any) -> Callable[[int, int], None]:
    """Outgoing LDAP, SFTP and FTP connections (rows only: the listing never builds a connection)."""

    def _make(count: int, start: int) -> None:
        model.objects.bulk_create(model(name=f"{model._meta.model_name}-{i:05d}", **fields)
                                  for i in range(start, start + count))

    return _make


def _modules(count: int, start: int) -> None:
    ServiceModule.objects.bulk_create(
        ServiceModule(name=f"listing_mod_{i:05d}", filename=f"listing_mod_{i:05d}.py", source="x = 1\n" * 200)
        for i in range(start, start + count)
    )


def _services(count: int, start: int) -> None:
    module, _ = ServiceModule.objects.get_or_create(name="listing_services", defaults={"source": "x = 1\n"})
    DeployedService.objects.bulk_create(
        DeployedService(name=f"listing.s{i:05d}", module=module, class_name=f"S{i}")
        for i in range(start, start + count)
    )


def _jobs(count: int, start: int) -> None:
    from scheduling.models import Job

    service = DeployedService.objects.get(name="demo.get-customer")
    Job.objects.bulk_create(
        Job(name=f"job-{i:05d}", service=service, job_type=Job.JobType.INTERVAL_BASED, start_date=timezone.now(),
            minutes=5)
        for i in range(start, start + count)
    )


def _login_attempts(count: int, start: int) -> None:
    from accounts.models import LoginAttempt

    LoginAttempt.objects.bulk_create(
        LoginAttempt(username=f"user-{i}", address="192.0.2.1", stage=LoginAttempt.Stage.PASSWORD,
                     outcome=LoginAttempt.Outcome.FAILURE, reason="wrong password")
        for i in range(start, start + count)
    )


def _api_tokens(count: int, start: int) -> None:
    from accounts.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username="token-owner", defaults={"is_staff": True})
    ApiToken.objects.bulk_create(
        ApiToken(user=user, name=f"token-{i}", prefix=f"sbt_{i:08d}", token_hash="hmac-sha256$not-a-hash")
        for i in range(start, start + count)
    )


def _totp_devices(count: int, start: int) -> None:
    from accounts.models import TOTPDevice

    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"totp-user-{i:05d}") for i in range(start, start + count)
    )
    TOTPDevice.objects.bulk_create(TOTPDevice(user=user, encrypted_key="not-a-key") for user in users)


def _websocket_channels(count: int, start: int) -> None:
    from integration.models import WebSocketChannel, WebSocketClient

    service = DeployedService.objects.get(name="demo.echo")
    browsers, _ = JWTDefinition.objects.get_or_create(name="listing-jwt", defaults={"username": "listing-jwt"})
    channels = WebSocketChannel.objects.bulk_create(
        WebSocketChannel(name=f"ws-{i:05d}", path=f"/ws/things/{i:05d}", service=service,
                         security=browsers if i % 2 else None)
        for i in range(start, start + count)
    )
    WebSocketClient.objects.bulk_create(  # every channel lists its live client count
        WebSocketClient(channel=channel, client_id=f"{channel.pk:032x}") for channel in channels
    )


def _websocket_clients(count: int, start: int) -> None:
    from integration.models import WebSocketChannel, WebSocketClient

    channel, _ = WebSocketChannel.objects.get_or_create(
        name="listing-ws", defaults={"path": "/ws/listing", "service": DeployedService.objects.get(name="demo.echo")})
    WebSocketClient.objects.bulk_create(
        WebSocketClient(channel=channel, client_id=f"{i:032x}", username=f"user-{i}")
        for i in range(start, start + count)
    )


def _oauth(name: str = "listing-oauth") -> Any:
    """One OAuth definition the outgoing HTTP connections share (a multi-table child: ``save()``, not bulk)."""
    try:
        return OAuthDefinition.objects.get(name=name)
    except OAuthDefinition.DoesNotExist:
        definition = OAuthDefinition(name=name, token_url="https://auth.example.com/oauth2/token",
                                     client_id="switchboard", scopes="read write")
        definition.set_secret("listing-secret")
        definition.save()
        return definition


def _outgoing_rest(count: int, start: int) -> None:
    from connections.models import OutgoingRest

    oauth = _oauth()
    OutgoingRest.objects.bulk_create(  # every other one gets its tokens through the shared OAuth definition
        OutgoingRest(name=f"rest-{i:05d}", address=f"https://api{i % 7}.example.com/v2", url_path=f"/things/{i}",
                     auth_type=OutgoingRest.AuthType.OAUTH if i % 2 else OutgoingRest.AuthType.NONE,
                     oauth=oauth if i % 2 else None)
        for i in range(start, start + count)
    )


def _outgoing_fhir(count: int, start: int) -> None:
    from connections.models import OutgoingFhir

    oauth = _oauth()
    OutgoingFhir.objects.bulk_create(
        OutgoingFhir(name=f"fhir-{i:05d}", address=f"https://fhir{i % 7}.example.com/r4",
                     auth_type=OutgoingFhir.AuthType.OAUTH if i % 2 else OutgoingFhir.AuthType.NONE,
                     oauth=oauth if i % 2 else None)
        for i in range(start, start + count)
    )


def _broker(name: str = "listing-broker") -> Any:
    from connections.models import AMQPBroker

    broker, _ = AMQPBroker.objects.get_or_create(name=name, defaults={"host": "rabbit.example.com"})
    return broker


def _amqp_brokers(count: int, start: int) -> None:
    from connections.models import AMQPBroker

    AMQPBroker.objects.bulk_create(
        AMQPBroker(name=f"broker-{i:05d}", host=f"rabbit{i % 3}.example.com", vhost=f"/v{i % 5}")
        for i in range(start, start + count)
    )


def _outgoing_amqp(count: int, start: int) -> None:
    from connections.models import OutgoingAMQP

    brokers = [_broker("listing-broker-a"), _broker("listing-broker-b")]
    OutgoingAMQP.objects.bulk_create(
        OutgoingAMQP(name=f"out-amqp-{i:05d}", broker=brokers[i % 2], exchange="orders", routing_key=f"orders.{i}")
        for i in range(start, start + count)
    )


def _amqp_channels(count: int, start: int) -> None:
    from integration.models import AMQPChannel

    brokers = [_broker("listing-broker-a"), _broker("listing-broker-b")]
    service = DeployedService.objects.get(name="demo.echo")
    AMQPChannel.objects.bulk_create(
        AMQPChannel(name=f"amqp-{i:05d}", broker=brokers[i % 2], queue=f"queue-{i:05d}", service=service)
        for i in range(start, start + count)
    )


def _file_channel(name: str) -> Any:
    from integration.models import FileChannel

    channel, _ = FileChannel.objects.get_or_create(
        name=name, defaults={"directory": f"/srv/in/{name}", "service": DeployedService.objects.get(name="demo.echo")})
    return channel


def _file_channels(count: int, start: int) -> None:
    from integration.models import FileChannel

    service = DeployedService.objects.get(name="demo.echo")
    FileChannel.objects.bulk_create(
        FileChannel(name=f"files-{i:05d}", directory=f"/srv/in/{i:05d}", patterns="*.csv", service=service)
        for i in range(start, start + count)
    )


def _file_claims(count: int, start: int) -> None:
    from integration.models import FileClaim

    channels = [_file_channel("listing-files-a"), _file_channel("listing-files-b")]
    FileClaim.objects.bulk_create(
        FileClaim(channel=channels[i % 2], key=f"{i:064x}", path_key=f"{i:064x}", path=f"/srv/in/file-{i:05d}.csv",
                  size=i, mtime_ns=i * 1_000_000, event="created", status=FileClaim.Status.DONE, owner="host:1",
                  cid=f"cid-{i}", finished_at=timezone.now())
        for i in range(start, start + count)
    )


BUILDERS: dict[str, Callable[[int, int], None]] = {
    "integration.WebSocketChannel": _websocket_channels,
    "integration.WebSocketClient": _websocket_clients,
    "accounts.LoginAttempt": _login_attempts,
    "accounts.ApiToken": _api_tokens,
    "accounts.TOTPDevice": _totp_devices,
    "scheduling.Job": _jobs,
    "integration.ServiceModule": _modules,
    "integration.DeployedService": _services,
    "accounts.BasicAuth": _definitions(BasicAuth, username=lambda i: f"user-{i}"),
    "accounts.TechAccount": _definitions(TechAccount),
    "accounts.ApiKey": _definitions(ApiKey),
    "accounts.JWTDefinition": _definitions(JWTDefinition, username=lambda i: f"jwt-user-{i}"),
    "connections.VaultConnection": _definitions(VaultConnection),
    "accounts.OAuthDefinition": _definitions(
        OAuthDefinition, token_url=lambda i: f"https://auth{i % 7}.example.com/token", client_id=lambda i: f"c-{i}"),
    "connections.OutgoingRest": _outgoing_rest,
    "connections.OutgoingFhir": _outgoing_fhir,
    "connections.AMQPBroker": _amqp_brokers,
    "connections.OutgoingAMQP": _outgoing_amqp,
    "integration.AMQPChannel": _amqp_channels,
    "integration.FileChannel": _file_channels,
    "integration.FileClaim": _file_claims,
    "connections.LdapConnection": _connections(LdapConnection),
    "connections.SftpConnection": _connections(SftpConnection, username="u", accept_unknown_host_key=True),
    "connections.FtpConnection": _connections(FtpConnection),
}


def test_every_listing_of_ours_has_a_builder_for_the_query_count_test() -> None:
    listed = {model._meta.label for model, _ in our_admins()}
    assert listed - set(BUILDERS) - {"integration.RestChannel"} == set()


def _listing(staff: Any, url: str) -> tuple[int, int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(url, {"page_size": 250})
    assert response.status_code == 200
    return len(response.context["cl"].result_list), len(queries), [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("label", sorted([*BUILDERS, "integration.RestChannel"]))
def test_a_listing_runs_as_many_queries_for_1000_rows_as_for_100(
    staff: Any, channels: Callable[..., Any], label: str
) -> None:
    """At 250 rows a page the two pages show 100 and 250 rows: a query per row would show."""
    build = (lambda count, start: channels(count, start)) if label == "integration.RestChannel" else BUILDERS[label]
    app_label, model_name = label.lower().split(".")
    url = f"/admin/{app_label}/{model_name}/"
    build(100, 0)
    rows_small, queries_small, _ = _listing(staff, url)
    build(900, 100)
    rows_big, queries_big, sql_big = _listing(staff, url)
    assert rows_small >= 100
    assert rows_big == 250
    assert queries_big == queries_small, "\n".join(sql_big)


# --- Counting big tables ---------------------------------------------------------------------


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RestChannel._meta.db_table}")


def _counts(sql: list[str]) -> list[str]:
    return [q for q in sql if "COUNT(" in q.upper() and RestChannel._meta.db_table in q]


def test_a_big_unfiltered_listing_shows_the_planners_estimate(
    staff: Any, settings: Any, channels: Callable[..., Any]
) -> None:
    settings.ADMIN_EXACT_COUNT_LIMIT = 500
    made = channels(1000)
    _analyze()
    # Delete 400 rows without analysing again: the estimate still says 1000, COUNT(*) would say 600.
    RestChannel.objects.filter(pk__in=[c.pk for c in made[600:]]).delete()
    with CaptureQueriesContext(connection) as queries:
        response = staff.get(CHANNELS_URL)
    cl = response.context["cl"]
    assert cl.count_is_estimate
    # The planner's figure (reltuples scaled to the table's current pages) may be off by a row or two;
    # what matters is that it is the estimate of the 1000 rows analysed, not COUNT(*)'s 600.
    assert 990 <= cl.result_count <= 1010, cl.result_count
    assert f"about {cl.result_count} REST channels" in response.content.decode()
    assert _counts([q["sql"] for q in queries.captured_queries]) == []
    # A page past the true end is empty, not an error.
    beyond = staff.get(CHANNELS_URL, {"p": 19})
    assert beyond.status_code == 200
    assert shown(beyond) == []


def test_a_filtered_or_small_listing_is_counted_exactly(
    staff: Any, settings: Any, channels: Callable[..., Any]
) -> None:
    settings.ADMIN_EXACT_COUNT_LIMIT = 500
    made = channels(1000)
    _analyze()
    RestChannel.objects.filter(pk__in=[c.pk for c in made[600:]]).delete()
    with CaptureQueriesContext(connection) as queries:
        searched = staff.get(CHANNELS_URL, {"q": "channel"})
    assert searched.context["cl"].result_count == 600
    assert not searched.context["cl"].count_is_estimate
    assert len(_counts([q["sql"] for q in queries.captured_queries])) == 1
    filtered = staff.get(CHANNELS_URL, {"method__exact": "GET"})
    assert filtered.context["cl"].result_count == 120
    settings.ADMIN_EXACT_COUNT_LIMIT = 20_000
    unfiltered = staff.get(CHANNELS_URL)
    assert unfiltered.context["cl"].result_count == 600
    assert "about" not in unfiltered.content.decode().split('class="sb-count"')[1][:40]


# --- Help texts ------------------------------------------------------------------------------


# Fields of our admins' forms that may go without a help text, and why.
HELP_TEXT_EXEMPT: dict[str, str] = {}


def our_admins() -> list[tuple[type, admin.ModelAdmin]]:
    return sorted(
        ((model, model_admin) for model, model_admin in admin.site._registry.items()
         if model._meta.app_label in OUR_APPS),
        key=lambda pair: pair[0]._meta.label,
    )


def test_every_admin_field_has_help_text(alice: Any) -> None:
    """Every input of every add form, and every model field shown read-only, says what it is for."""
    request = RequestFactory().get("/admin/")
    request.user = alice
    missing = []
    for model, model_admin in our_admins():
        label = model._meta.label
        form = model_admin.get_form(request)()
        missing += [f"{label}.{name}" for name, field in form.fields.items() if not (field.help_text or "").strip()]
        model_fields = {f.name: f for f in model._meta.get_fields() if hasattr(f, "help_text")}
        for name in model_admin.get_readonly_fields(request):
            if name in model_fields and not str(model_fields[name].help_text).strip():
                missing.append(f"{label}.{name} (read-only)")
    for form_class in (ChangePasswordForm, InvokeForm):
        missing += [f"{form_class.__name__}.{name}" for name, field in form_class().fields.items()
                    if not (field.help_text or "").strip()]
    assert our_admins(), "no admin of ours is registered"
    assert [m for m in missing if m not in HELP_TEXT_EXEMPT] == [], "fields without a help text for the administrator"
