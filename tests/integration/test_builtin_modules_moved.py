"""integration's built-in modules moved from integration/builtin/ to integration/services/ (issue 12).

Service names are what channels, jobs and callers use, so the move must not change one; and a
database recorded by the code before the move must end, after ``migrate``, with exactly what a
fresh database has (migration 0006 renames the stored module rows; sync_builtin, which runs after
every ``migrate``, then brings their source up to date).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from integration.deploy import sync_builtin
from integration.models import DeployedService, ServiceModule
from integration.registry import load_builtin, source_hash

pytestmark = pytest.mark.django_db

BEFORE = ("integration", "0005_websocket_channels")
MIGRATION = ("integration", "0006_builtin_modules_in_services_package")
MOVED = {
    "integration.builtin.core": "integration.services.core",
    "integration.builtin.demo": "integration.services.demo",
    "integration.builtin.websocket": "integration.services.websocket",
}

# Every built-in service, listed from `manage.py shell` before the move: name -> (module, class).
BUILTIN_SERVICES = {
    "zato.ping": ("integration.services.core", "Ping"),
    "pub.zato.ping": ("integration.services.core", "PubPing"),
    "demo.hello": ("integration.services.demo", "Hello"),
    "demo.echo": ("integration.services.demo", "Echo"),
    "demo.get-customer": ("integration.services.demo", "GetCustomer"),
    "demo.create-customer": ("integration.services.demo", "CreateCustomer"),
    "demo.resource": ("integration.services.demo", "Resource"),
    "demo.invoice-json": ("integration.services.demo", "InvoiceJSON"),
    "demo.invoice-pdf": ("integration.services.demo", "InvoicePDF"),
    "demo.text-any": ("integration.services.demo", "TextAny"),
    "demo.notify": ("integration.services.demo", "Notify"),
    "demo.notifications-page": ("integration.services.demo", "NotificationsPage"),
    "zato.wsx.create-token": ("integration.services.websocket", "CreateToken"),
    "zato.security.jwt.create-token": ("accounts.services", "CreateJWTToken"),
    "zato.scheduler.job.create": ("scheduling.services", "CreateJob"),
    "zato.scheduler.job.delete": ("scheduling.services", "DeleteJob"),
    "zato.scheduler.job.edit": ("scheduling.services", "EditJob"),
    "zato.scheduler.job.execute": ("scheduling.services", "ExecuteJob"),
    "zato.scheduler.job.get-by-id": ("scheduling.services", "GetJobById"),
    "zato.scheduler.job.get-by-name": ("scheduling.services", "GetJobByName"),
    "zato.scheduler.job.get-list": ("scheduling.services", "GetJobList"),
    "zato.scheduler.job.set-active-status": ("scheduling.services", "SetJobActiveStatus"),
}


def test_every_built_in_service_keeps_its_name() -> None:
    found = {info.name: (info.module_name, info.cls.__name__)
             for dotted in settings.BUILTIN_SERVICE_MODULES for info in load_builtin(dotted).services}
    assert found == BUILTIN_SERVICES


def test_integration_s_built_in_services_pin_their_names() -> None:
    """A name set on the class does not depend on where its module lives, so moving it again is safe."""
    for name, (module, class_name) in BUILTIN_SERVICES.items():
        if module.startswith("integration."):
            assert getattr(importlib.import_module(module), class_name).__dict__.get("name") == name


def test_the_service_api_is_importable_as_before() -> None:
    from integration import services

    for public in services.__all__:
        assert hasattr(services, public), public
    assert {"Service", "BadRequest", "Int", "Request", "Response", "PushFailed"} <= set(services.__all__)


def recorded() -> dict[str, Any]:
    """What the database says about every module and service, without ids and timestamps."""
    modules = {
        row["name"]: row
        for row in ServiceModule.objects.values(
            "name", "filename", "origin", "source", "source_hash", "last_error", "rejected_hash")
    }
    services = set(DeployedService.objects.values_list("name", "class_name", "module__name"))
    return {"modules": modules, "services": services}


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def record_as_before_the_move() -> dict[str, int]:
    """Give the built-in rows what the code before the move recorded; return their ids by old name.

    Migrating back already renamed them; the source is the old one too (demo's import line).
    """
    ids = {}
    for old in MOVED:
        row = ServiceModule.objects.get(name=old)
        source = row.source.replace("integration.services.websocket import", "integration.builtin.websocket import")
        ServiceModule.objects.filter(pk=row.pk).update(filename=old, source=source, source_hash=source_hash(source))
        ids[old] = row.pk
    return ids


def test_a_database_from_before_the_move_ends_as_a_fresh_one_after_migrate(make_channel: Any) -> None:
    sync_builtin()
    fresh = recorded()
    assert set(MOVED.values()) <= set(fresh["modules"])
    migrate(BEFORE)
    try:
        ids = record_as_before_the_move()
        demo = ServiceModule.objects.get(name="integration.builtin.demo")
        assert demo.source != fresh["modules"]["integration.services.demo"]["source"]  # the old import line
        channel = make_channel("/upgrade/hello", "demo.hello")
    finally:
        migrate(MIGRATION)

    assert not ServiceModule.objects.filter(name__startswith="integration.builtin").exists()
    for old, new in MOVED.items():
        assert ServiceModule.objects.get(name=new).pk == ids[old]  # renamed in place: services keep their module
    sync_builtin()  # what `migrate` runs after the migrations (post_migrate)
    assert recorded() == fresh
    channel.refresh_from_db()
    assert (channel.service.name, channel.service.module.name) == ("demo.hello", "integration.services.demo")


def test_migrating_back_gives_the_old_names(builtins: None) -> None:
    migrate(BEFORE)
    try:
        names = set(ServiceModule.objects.values_list("name", flat=True))
        assert set(MOVED) <= names
        assert not names & set(MOVED.values())
        assert ServiceModule.objects.get(name="integration.builtin.core").filename == "integration.builtin.core"
        assert set(DeployedService.objects.filter(module__name="integration.builtin.core")
                   .values_list("name", flat=True)) == {"zato.ping", "pub.zato.ping"}
    finally:
        migrate(MIGRATION)
    assert set(MOVED.values()) <= set(ServiceModule.objects.values_list("name", flat=True))


def test_a_module_recorded_under_both_names_keeps_one_row_with_all_its_services(builtins: None) -> None:
    from django.apps import apps

    migration = importlib.import_module("integration.migrations.0006_builtin_modules_in_services_package")
    new = ServiceModule.objects.get(name="integration.services.core")
    old = ServiceModule.objects.create(name="integration.builtin.core", filename="integration.builtin.core",
                                       origin=ServiceModule.Origin.BUILTIN)
    DeployedService.objects.filter(name="pub.zato.ping").update(module=old)

    migration.forwards(apps, None)

    assert not ServiceModule.objects.filter(name__startswith="integration.builtin").exists()
    assert set(ServiceModule.objects.get(pk=new.pk).services.values_list("name", flat=True)) == {
        "zato.ping", "pub.zato.ping"}


def test_user_modules_are_left_alone(builtins: None) -> None:
    from django.apps import apps

    migration = importlib.import_module("integration.migrations.0006_builtin_modules_in_services_package")
    ServiceModule.objects.create(name="builtin_core", filename="/pickup/builtin_core.py")
    before = recorded()
    migration.forwards(apps, None)
    assert recorded() == before
