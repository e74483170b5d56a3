"""Deploying source: acceptance, rejection that keeps the old version, and the pickup watcher."""

from __future__ import annotations

import os

import pytest

from integration import snapshot
from integration.deploy import PickupWatcher, deploy_sources
from integration.invoke import invoke
from integration.models import ConfigVersion, DeployedService, ServiceModule

pytestmark = pytest.mark.django_db

V1 = "from integration.services import Service\nclass Hello(Service):\n    def handle(self):\n" \
     "        self.response.payload = {'v': 1}\n"
V2 = V1.replace("'v': 1", "'v': 2")


def test_it_stores_the_source_and_the_services() -> None:
    (outcome,) = deploy_sources([("greet.py", V1)], "cli")
    assert outcome.ok and outcome.changed
    assert outcome.services == ["greet.hello"]
    module = ServiceModule.objects.get(name="greet")
    assert module.source == V1
    assert module.origin == "cli"
    assert list(module.services.values_list("name", flat=True)) == ["greet.hello"]
    assert invoke("greet.hello").payload == {"v": 1}


def test_redeploying_the_same_source_changes_nothing() -> None:
    deploy_sources([("greet.py", V1)])
    version = ConfigVersion.current()
    (again,) = deploy_sources([("greet.py", V1)])
    assert again.ok and not again.changed
    assert ConfigVersion.current() == version  # no rebuild in any process


def test_a_syntax_error_is_rejected_and_the_old_version_keeps_serving() -> None:
    deploy_sources([("greet.py", V1)])
    broken = V2 + "def oops(:\n"
    (outcome,) = deploy_sources([("greet.py", broken)])
    assert not outcome.ok
    assert "Syntax error in greet.py, line 5" in outcome.error
    module = ServiceModule.objects.get(name="greet")
    assert module.source == V1
    assert "Syntax error" in module.last_error
    assert invoke("greet.hello").payload == {"v": 1}
    # Fixing the file clears the error.
    deploy_sources([("greet.py", V2)])
    module.refresh_from_db()
    assert module.last_error == ""
    assert invoke("greet.hello").payload == {"v": 2}


def test_an_import_error_is_rejected_with_a_clear_message() -> None:
    (outcome,) = deploy_sources([("needs.py", "import no_such_library_here\n" + V1)])
    assert outcome.error == (
        "needs.py could not be imported, line 1: ModuleNotFoundError: No module named 'no_such_library_here'"
    )
    assert not DeployedService.objects.filter(name="needs.hello").exists()
    # Recorded for the admin even though nothing was ever deployed from it.
    assert ServiceModule.objects.get(name="needs").last_error == outcome.error


def test_a_service_name_owned_by_another_module_is_rejected() -> None:
    named = "from integration.services import Service\nclass A(Service):\n    name = 'shared.name'\n"
    deploy_sources([("first.py", named)])
    (outcome,) = deploy_sources([("second.py", named)])
    assert outcome.error == "Service `shared.name` is already deployed from module `first`"


def test_a_built_in_module_cannot_be_replaced(builtins) -> None:
    (outcome,) = deploy_sources([("integration.services.demo.py", V1)])
    assert not outcome.ok  # not even a valid module name
    hijack = "from integration.services import Service\nclass P(Service):\n    name = 'zato.ping'\n"
    (outcome,) = deploy_sources([("mine.py", hijack)])
    assert "already deployed from module `integration.services.core`" in outcome.error


def test_services_gone_from_a_module_are_removed() -> None:
    two = V1 + "class Bye(Service):\n    pass\n"
    deploy_sources([("greet.py", two)])
    deploy_sources([("greet.py", V1)])
    assert list(DeployedService.objects.filter(module__name="greet").values_list("name", flat=True)) == [
        "greet.hello"
    ]
    snapshot.reset()
    assert snapshot.current().registry.get("greet.bye") is None


def test_the_watcher_deploys_a_file_once_it_has_settled(tmp_path) -> None:
    watcher = PickupWatcher(tmp_path)
    path = tmp_path / "dropped.py"
    path.write_text(V1)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.py").write_text("ignored too")
    # First scan only notes the file: it may still be being written.
    assert watcher.scan() == []
    (outcome,) = watcher.scan()
    assert outcome.services == ["dropped.hello"]
    assert watcher.scan() == []  # nothing changed since
    path.write_text(V2)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert watcher.scan() == []
    (changed,) = watcher.scan()
    assert changed.changed
    assert invoke("dropped.hello").payload == {"v": 2}


def test_a_missing_pickup_directory_is_not_an_error(tmp_path) -> None:
    assert PickupWatcher(tmp_path / "absent").scan() == []


def test_a_batch_deploy_is_one_configuration_change() -> None:
    before = ConfigVersion.current()
    files = [(f"batch_{i}.py", V1.replace("'v': 1", f"'v': {i}")) for i in range(20)]
    assert all(outcome.ok for outcome in deploy_sources(files))
    # One bump, not one per module or service row: every process rebuilds once.
    assert ConfigVersion.current() == before + 1


def test_the_watcher_retries_a_file_whose_deployment_failed(tmp_path, monkeypatch) -> None:
    from integration import deploy

    watcher = PickupWatcher(tmp_path)
    (tmp_path / "later.py").write_text(V1)
    watcher.scan()

    def database_down(*args, **kwargs):
        raise deploy.DeploymentError("database unreachable")  # stands in for an OperationalError

    monkeypatch.setattr(deploy, "deploy_sources", database_down)
    with pytest.raises(deploy.DeploymentError):
        watcher.scan()
    monkeypatch.undo()
    # The failed attempt did not mark the file as seen: the next scan deploys it.
    (outcome,) = watcher.scan()
    assert outcome.services == ["later.hello"]


@pytest.mark.django_db(transaction=True)
def test_two_processes_picking_up_the_same_file_deploy_it_once() -> None:
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    outcomes = []

    def pick_up() -> None:
        barrier.wait()
        try:
            outcomes.extend(deploy_sources([("shared_pickup.py", V1)]))
        finally:
            connection.close()  # each thread has its own connection, like each worker process

    threads = [threading.Thread(target=pick_up) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Deployments are serialised on the version row: the second finds the source unchanged.
    assert sorted(outcome.changed for outcome in outcomes) == [False, True]
    assert all(outcome.services == ["shared-pickup.hello"] for outcome in outcomes)
