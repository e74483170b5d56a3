"""The management API cannot be a way around TOTP: API tokens, verified sessions, Basic only when asked for.

Alice is a superuser, Bob staff without admin rights (tests/conftest.py).
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import ApiToken, LoginAttempt
from tests.conftest import ALICE_PASSWORD, Clock, api_client_for, basic_header, verified_login

pytestmark = pytest.mark.django_db
API = "/manage/api/v1"
GOOD = "from integration.services import Service\nclass Quote(Service):\n    def handle(self):\n" \
       "        self.response.payload = {'quote': 1}\n"


def create_token(*args: str) -> tuple[str, str]:
    """``manage.py api_token create ...`` -> (the token printed on stdout, what stderr said)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("api_token", "create", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["result"] == "Error" and body["cid"] == response["X-Zato-CID"]
    return str(body["details"])


def test_a_token_made_on_the_command_line_works_as_token_or_bearer(alice, builtins) -> None:
    token, said = create_token("alice", "--name", "deploy script")
    assert re.fullmatch(r"sbt_[A-Za-z0-9_-]{43}", token)
    assert "shown only now" in said and token not in said
    for scheme in ("Token", "Bearer", "token"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token}")
        assert client.get(f"{API}/services/").status_code == 200, scheme


def test_only_a_prefix_and_a_keyed_hash_are_stored(alice) -> None:
    token, _ = create_token("alice")
    row = ApiToken.objects.get()
    assert row.prefix == token[:12] and token not in row.token_hash and token[12:] not in str(vars(row))
    assert row.token_hash.startswith("hmac-sha256$") and crypto.verify_secret(token, row.token_hash)
    assert row.expires is not None and timedelta(days=89) < row.expires - timezone.now() <= timedelta(days=90)


def test_wrong_expired_revoked_and_orphaned_tokens_are_refused_with_a_reason(alice, bob) -> None:
    token, _ = create_token("alice", "--expires-in", "1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token[:-4]}xxxx")
    assert error_of(client.get(f"{API}/services/"), 401) == "Invalid API token"
    client.credentials(HTTP_AUTHORIZATION=f"Token {token} extra")
    assert "Malformed Authorization header" in error_of(client.get(f"{API}/services/"), 401)

    row = ApiToken.objects.get()
    row.expires = timezone.now() - timedelta(seconds=1)
    row.save()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert "expired" in error_of(client.get(f"{API}/services/"), 401)

    never, _ = create_token("alice", "--expires-in", "0")
    assert ApiToken.objects.get(prefix=never[:12]).expires is None
    out = io.StringIO()
    call_command("api_token", "revoke", never[:12], stdout=out)
    assert f"Revoked: {never[:12]}" in out.getvalue()
    client.credentials(HTTP_AUTHORIZATION=f"Token {never}")
    assert "revoked" in error_of(client.get(f"{API}/services/"), 401)

    bobs, _ = create_token("bob")
    bob.is_active = False
    bob.save()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bobs}")
    assert "inactive or not staff" in error_of(client.get(f"{API}/services/"), 401)


def test_the_command_refuses_what_the_api_would_refuse_and_lists_tokens(alice, bob, db) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("carol", "carol@example.com", "x")  # not staff
    with pytest.raises(CommandError, match="not an active staff user"):
        create_token("carol")
    with pytest.raises(CommandError, match="No user 'dave'"):
        create_token("dave")
    with pytest.raises(CommandError, match="--expires-in"):
        create_token("alice", "--expires-in", "-1")
    create_token("alice", "--name", "ci", "--read-only")
    create_token("bob")
    out = io.StringIO()
    call_command("api_token", "list", "alice", stdout=out)
    listing = out.getvalue()
    assert "ci" in listing and "read-only" in listing and "bob" not in listing and "active" in listing
    out = io.StringIO()
    call_command("api_token", "revoke", "--user", "bob", stdout=out)
    assert "Revoked" in out.getvalue()
    assert ApiToken.objects.get(user=bob).status == "revoked"
    with pytest.raises(CommandError, match="No API token"):
        call_command("api_token", "revoke", "sbt_nothere")


def test_last_used_is_written_at_most_once_a_minute(alice, monkeypatch) -> None:
    from accounts import api_auth

    clock = Clock(1000.0)
    monkeypatch.setattr(api_auth.time, "monotonic", clock)
    client = api_client_for(alice)
    assert ApiToken.objects.get().last_used is None
    assert client.get(f"{API}/services/").status_code == 200
    first = ApiToken.objects.get().last_used
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get(f"{API}/services/").status_code == 200
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get().last_used == first
    clock.advance(61)
    ApiToken.objects.update(last_used=timezone.now() - timedelta(minutes=2))  # as a minute later
    assert client.get(f"{API}/services/").status_code == 200
    assert ApiToken.objects.get().last_used > timezone.now() - timedelta(seconds=5)


def test_a_read_only_token_reads_but_may_not_write_deploy_invoke_or_run_jobs(alice, builtins) -> None:
    from integration.models import DeployedService
    from scheduling import jobs
    from scheduling.models import Job

    job = jobs.save_job(Job(name="nightly", service=DeployedService.objects.get(name="demo.hello"),
                            job_type="interval_based", start_date=timezone.now() + timedelta(hours=1), hours=1))
    reader = api_client_for(alice, read_only=True)
    assert reader.get(f"{API}/channels/rest/").status_code == 200
    assert reader.options(f"{API}/channels/rest/").status_code == 200
    refusals = [
        reader.post(f"{API}/channels/rest/", {"name": "c", "url_path": "/c", "service": "demo.hello"},
                    format="json"),
        reader.post(f"{API}/services/", {"filename": "q.py", "source": GOOD}, format="json"),
        reader.post(f"{API}/invoke/demo.hello", {}, format="json"),
        reader.post(f"{API}/scheduling/jobs/{job.pk}/execute/"),
        reader.patch(f"{API}/scheduling/jobs/{job.pk}/", {"is_active": False}, format="json"),
        reader.delete(f"{API}/scheduling/jobs/{job.pk}/"),
    ]
    for response in refusals:
        assert "This API token is read-only" in error_of(response, 403)
    assert Job.objects.get(pk=job.pk).is_active and not DeployedService.objects.filter(name="q.quote").exists()


def test_wrong_tokens_count_towards_the_limits(alice, settings) -> None:
    settings.CREDENTIAL_MAX_FAILURES = 3
    token, _ = create_token("alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token[:-4]}xxxx")
    for _ in range(3):
        error_of(client.get(f"{API}/services/"), 401)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    refused = client.get(f"{API}/services/")
    assert "Too many failed attempts" in error_of(refused, 429)
    assert int(refused["Retry-After"]) > 0
    assert LoginAttempt.objects.filter(kind="api", definition="API token", stage="key").count() == 3


def test_basic_auth_is_off_by_default_and_says_what_to_do_instead(alice) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", ALICE_PASSWORD))
    details = error_of(client.get(f"{API}/services/"), 401)
    assert "MANAGE_API_BASIC_AUTH=false" in details
    assert "python manage.py api_token create USER" in details and "Authorization: Token <token>" in details
    assert not LoginAttempt.objects.exists()  # no password was checked


def test_basic_auth_when_on_works_and_is_audited_like_the_admin_login(alice, settings, builtins) -> None:
    settings.MANAGE_API_BASIC_AUTH = True
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", ALICE_PASSWORD))
    assert client.get(f"{API}/services/").status_code == 200
    assert client.get(f"{API}/services/").status_code == 200  # remembered: no second row
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", "wrong"))
    error_of(client.get(f"{API}/services/"), 401)
    rows = list(LoginAttempt.objects.order_by("pk").values_list("kind", "username", "outcome", "reason"))
    assert rows == [("api", "alice", "success", ""), ("api", "alice", "failure", "wrong password")]


def test_basic_auth_when_on_is_throttled_with_the_admin_login(alice, settings, login_clock) -> None:
    settings.MANAGE_API_BASIC_AUTH = True
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", "wrong"))
    for _ in range(3):  # the admin throttle's free failures
        error_of(client.get(f"{API}/services/"), 401)
    client.credentials(HTTP_AUTHORIZATION=basic_header("alice", ALICE_PASSWORD))
    refused = client.get(f"{API}/services/")
    assert "Too many failed attempts" in error_of(refused, 429)
    assert refused["Retry-After"] == "1"  # the 4th attempt waits 2^0 s after the last failure
    # The admin login form counts the same failures: both check Alice's own password.
    page = Client().post("/admin/login/", {"username": "alice", "password": ALICE_PASSWORD})
    assert "Too many failed attempts" in page.content.decode()
    login_clock.advance(1.5)
    assert client.get(f"{API}/services/").status_code == 200


def test_a_session_must_have_passed_the_totp_step(alice, totp_device, settings) -> None:
    client = APIClient()
    client.force_login(alice)  # a session without the TOTP step
    assert "TOTP step" in error_of(client.get(f"{API}/services/"), 401)
    device, _key = totp_device(alice)
    assert verified_login(APIClient(), alice, device).get(f"{API}/services/").status_code == 200
    settings.ADMIN_REQUIRE_TOTP = False  # `make run`: sessions need no code
    assert client.get(f"{API}/services/").status_code == 200


def test_the_openapi_schema_documents_each_way_in(alice, settings) -> None:
    schema = api_client_for(alice).get("/manage/api/schema/?format=json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"]["in"] == "header" and "api_token create" in schemes["tokenAuth"]["description"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert "TOTP" in schemes["cookieAuth"]["description"]
    operation = schema["paths"]["/manage/api/v1/services/"]["get"]
    assert {"tokenAuth": []} in operation["security"] and {"bearerAuth": []} in operation["security"]
    assert {"basicAuth": []} not in operation["security"]  # off: not offered
    settings.MANAGE_API_BASIC_AUTH = True
    schema = api_client_for(alice).get("/manage/api/schema/?format=json").json()
    assert {"basicAuth": []} in schema["paths"]["/manage/api/v1/services/"]["get"]["security"]


def test_the_admin_makes_a_token_shows_it_once_and_revokes_it(admin_client_alice, alice, bob) -> None:
    page = admin_client_alice.post("/admin/accounts/apitoken/add/", {
        "name": "ci job", "user": str(alice.pk), "read_only": "on", "expires_in": "30"})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    token = re.search(r'id="api-token-value"[^>]*>([^<]+)<', page.content.decode()).group(1)
    row = ApiToken.objects.get()
    assert row.read_only and row.user == alice and crypto.verify_secret(token, row.token_hash)
    assert token not in admin_client_alice.get(f"/admin/accounts/apitoken/{row.pk}/change/").content.decode()
    assert api_client_for(alice).get(f"{API}/services/").status_code == 200
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert reader.get(f"{API}/services/").status_code == 200
    done = admin_client_alice.post("/admin/accounts/apitoken/", {
        "action": "revoke_tokens", "_selected_action": [str(row.pk)]})
    assert done.status_code == 302
    assert "revoked" in error_of(reader.get(f"{API}/services/"), 401)


def test_staff_see_and_make_only_their_own_tokens(client, bob, alice, totp_device) -> None:
    ApiToken.issue(alice, name="alice's")
    device, _key = totp_device(bob)
    verified_login(client, bob, device)
    listing = client.get("/admin/accounts/apitoken/").content.decode()
    assert "alice&#x27;s" not in listing and "alice's" not in listing
    page = client.post("/admin/accounts/apitoken/add/", {"name": "bob's", "user": str(alice.pk),
                                                         "expires_in": "0"})
    assert page.status_code == 200
    row = ApiToken.objects.get(name="bob's")
    assert row.user == bob and row.expires is None  # a staff user cannot make a token for someone else
