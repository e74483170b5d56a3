"""The OpenAPI schema at /manage/api/schema/ agrees with the management API (schemathesis).

schemathesis reads the schema the API serves and generates requests for every operation
from it: valid ones and, as an attacker would send, invalid ones. Each answer must be no
server error and must match the schema: a documented status code, a documented content
type, a body that validates against the documented shape (errors included).

Real parts: Django's WSGI application called in this process, on the test database
(PostgreSQL) and Redis. Requests are authenticated as the suite's administrator with the
credentials the ``api`` fixture sends, so a change of the management API's authentication
changes this test with it. Each operation gets a bounded number of examples and a fixed
seed, so a run is repeatable; all of them take about a minute.

Generated ids mostly name nothing (404), so every resource also has one object made
beforehand, and each operation on one object is tried on it too: reads, updates with
generated bodies, change-password, deletes (refused with 409 while in use). What would be
harmful is kept harmless rather than left out: "execute now" on the job goes to a queue of
this test's own that no worker reads (deleted afterwards), the module deployed by POST
services/ is whatever generated text happens to import, and invoke is tried with the
built-in ping service (the schema's example) besides generated names.

schemathesis's own pytest plugin is not used (it does not run on this project's pytest):
each operation is one parametrized test that drives schemathesis's Hypothesis strategies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiKey, JWTDefinition, TechAccount
from config.celery import app as celery_app
from connections.models import VaultConnection
from integration.models import DeployedService, RestChannel, WebSocketChannel, WebSocketClient
from scheduling import jobs
from scheduling.models import Job

pytestmark = pytest.mark.django_db
SCHEMA_URL = "/manage/api/schema/?format=json"
API = "/manage/api/v1"
EXAMPLES_PER_MODE = 12  # valid and invalid requests per operation
# What the schema promises about answers. Not checked: whether every schema-valid request is
# accepted (a REST channel's path must start with "/", a service must be deployed: rules no
# schema states) and whether every schema-invalid one is refused (DRF reads "5" as 5).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read when tests are collected (no database needed)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path) for path, item in generated["paths"].items() for method in item]


def credentials_of(client: APIClient) -> dict[str, str]:
    """The HTTP headers a DRF test client adds to every request (its ``credentials()``), by header name."""
    headers = {}
    for key, value in client._credentials.items():
        if key.startswith("HTTP_"):
            headers["-".join(part.capitalize() for part in key[5:].split("_"))] = value
    return headers


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """Django's WSGI application, called in this thread, inside the test's transaction.

    Django closes the database connection at the start and end of every request it serves;
    here that connection holds the test's transaction, so, as Django's test client does,
    the handlers that close it are off while the test runs.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def served_schema(api: APIClient, builtins: None, wsgi_app: Any) -> Any:
    """The schema as the API serves it to an administrator, bound to the WSGI application."""
    return schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app, headers=credentials_of(api))


@pytest.fixture
def private_queue() -> Iterator[str]:
    """Tasks sent during the test ("execute now") go to a queue of its own, deleted at the end."""
    queue = f"test-schema-{uuid.uuid4().hex}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_default_queue = previous
        with celery_app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


@pytest.fixture
def existing(deploy: Any, basic_auth: Any, private_queue: str) -> dict[str, dict[str, Any]]:
    """One object of every resource, by the path prefix that reaches it: {path prefix: path parameters}."""
    deploy("schema_target.py", """
        from integration.services import Service

        class Target(Service):
            def handle(self):
                self.response.payload = {"ok": True}
    """)
    target = DeployedService.objects.get(name="schema-target.target")
    partners = basic_auth(name="schema-partners")
    rest = RestChannel.objects.create(name="schema-rest", url_path="/schema/rest", service=target, security=partners)
    websocket = WebSocketChannel.objects.create(name="schema-ws", path="/schema/ws", service=target)
    # A connected client as a server records it: disconnecting it sends a message through the
    # channel layer (Redis) to a connection that does not exist, which nobody receives.
    client = WebSocketClient.objects.create(channel=websocket, client_id=uuid.uuid4().hex, username="ann",
                                            last_seen=timezone.now())
    tech = TechAccount(name="schema-tech")
    tech.set_password("schema-tech-password")
    tech.save()
    key = ApiKey(name="schema-key")
    key.new_key()
    key.save()
    jwt = JWTDefinition(name="schema-jwt", username="schema-jwt-user")
    jwt.set_password("schema-jwt-password")
    jwt.save()
    vault = VaultConnection.objects.create(name="schema-vault")
    job = jobs.save_job(Job(name="schema-job", service=target, job_type=Job.JobType.INTERVAL_BASED,
                            start_date=timezone.now() + timedelta(hours=1), hours=1))
    return {
        f"{API}/services/": {"name": target.name},
        f"{API}/modules/": {"name": "schema_target"},
        f"{API}/channels/rest/": {"id": rest.pk},
        f"{API}/channels/websocket/": {"id": websocket.pk, "client_id": client.client_id},
        f"{API}/security/basic-auth/": {"id": partners.pk},
        f"{API}/security/tech-accounts/": {"id": tech.pk},
        f"{API}/security/api-keys/": {"id": key.pk},
        f"{API}/security/jwt/": {"id": jwt.pk},
        f"{API}/security/vault/": {"id": vault.pk},
        f"{API}/scheduling/jobs/": {"id": job.pk},
    }


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_operation_answers_as_the_schema_says(served_schema: Any, existing: dict[str, dict[str, Any]],
                                                    api: APIClient, method: str, path: str) -> None:
    operation = served_schema[path][method]
    headers = credentials_of(api)
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    for prefix, parameters in existing.items():
        if path.startswith(prefix) and "{" in path:
            wanted = {name: value for name, value in parameters.items() if "{" + name + "}" in path}
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters=wanted)
                           for mode in GenerationMode]
    # The schema's own examples (e.g. invoking the built-in ping service) are tried first.
    examples = served_schema.get_strategies_from_examples(operation)

    @seed(20261102)
    @settings(max_examples=EXAMPLES_PER_MODE * len(strategies) + len(examples), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(*examples, *strategies))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def test_invoke_answers_with_any_content_type_or_none_as_the_schema_says(served_schema: Any, api: APIClient,
                                                                         deploy: Any) -> None:
    deploy("documents.py", """
        from integration.services import Service

        class Invoice(Service):
            def handle(self):
                self.response.payload = b"%PDF-1.4 an invoice"
                self.response.content_type = "application/pdf"

        class Accepted(Service):
            def handle(self):
                self.response.status_code = 202

        class Quiet(Service):
            def handle(self):
                pass
    """)
    operation = served_schema[f"{API}/invoke/{{service}}"]["POST"]
    answers = {}
    for service in ("documents.invoice", "documents.accepted", "documents.quiet"):
        case = operation.Case(path_parameters={"service": service}, body={}, media_type="application/json")
        response = case.call_and_validate(headers=credentials_of(api), checks=CHECKS)
        answers[service] = (response.status_code, response.headers.get("content-type"), response.content)
    assert answers["documents.invoice"] == (200, ["application/pdf"], b"%PDF-1.4 an invoice")
    assert answers["documents.accepted"][0] == 202 and answers["documents.accepted"][2] == b""
    # Nothing to parse, so not labelled JSON: an empty body cannot be valid JSON.
    assert answers["documents.quiet"] == (200, ["text/plain; charset=utf-8"], b"")
