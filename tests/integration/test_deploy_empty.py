"""A file without services does not undeploy a module; deleting the module does, explicitly.

An empty `.py` file dropped into the pickup directory (or one an editor truncated) used to be
accepted as "Deployed 0 services", which removed every service of the module: each channel
on it then answered 404. Now such a file is a rejected deployment, whichever way it comes
(pickup directory, ``manage.py deploy``, the management API), with the reason in the log, on
the module for the admin, and in the error, which says how to remove services instead:
``DELETE /manage/api/v1/modules/{name}/`` (or the admin), refused while channels or jobs use them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from integration.deploy import PickupWatcher, deploy_sources
from integration.models import DeployedService, RestChannel, ServiceModule
from scheduling import jobs
from scheduling.models import Job

pytestmark = pytest.mark.django_db
API = "/manage/api/v1"
QUOTES = (
    "from integration.services import Service\n\n\n"
    "class Quote(Service):\n    def handle(self):\n        self.response.payload = {'price': 7}\n\n\n"
    "class History(Service):\n    def handle(self):\n        self.response.payload = []\n"
)
WITHOUT_SERVICES = ["", "\n\n", "# nothing here yet\n", "import json\nLIMIT = 3\n"]


@pytest.fixture
def quotes() -> ServiceModule:
    """Module `quotes` with two services, the first of them on GET /quotes/price."""
    (outcome,) = deploy_sources([("quotes.py", QUOTES)], ServiceModule.Origin.PICKUP)
    assert outcome.ok, outcome.error
    RestChannel.objects.create(name="price", url_path="/quotes/price", method="GET",
                               service=DeployedService.objects.get(name="quotes.quote"))
    return ServiceModule.objects.get(name="quotes")


@pytest.mark.parametrize("source", WITHOUT_SERVICES)
def test_a_file_without_services_is_rejected_and_the_deployed_version_keeps_serving(client, quotes, source) -> None:
    (outcome,) = deploy_sources([("/srv/pickup/quotes.py", source)], ServiceModule.Origin.PICKUP)
    assert not outcome.ok
    assert outcome.error.startswith("/srv/pickup/quotes.py defines no services, but module `quotes` has 2 deployed "
                                    "(quotes.history, quotes.quote)")
    assert "delete it in the admin (Service modules) or with DELETE /manage/api/v1/modules/quotes/" in outcome.error
    quotes.refresh_from_db()
    assert quotes.source == QUOTES  # the last good source is what every process runs
    assert quotes.last_error == outcome.error  # the admin's Service modules list shows it
    assert set(DeployedService.objects.values_list("name", flat=True)) >= {"quotes.quote", "quotes.history"}
    # The channel is served by the real REST dispatcher, from a snapshot rebuilt after the rejection.
    reply = client.get("/quotes/price")
    assert (reply.status_code, reply.json()) == (200, {"price": 7})


def test_the_pickup_watcher_logs_why_it_rejected_an_empty_file(tmp_path, quotes, caplog) -> None:
    watcher = PickupWatcher(tmp_path)
    (tmp_path / "quotes.py").write_text("")
    watcher.scan()  # the first scan only notes the file; the second, with the file unchanged, deploys it
    with caplog.at_level(logging.ERROR, logger="integration.deploy"):
        (outcome,) = watcher.scan()
    assert "defines no services" in outcome.error
    assert any("rejected" in record.getMessage() and "defines no services" in record.getMessage()
               for record in caplog.records)
    assert DeployedService.objects.filter(module=quotes).count() == 2


def test_the_admin_lists_the_rejection(admin_client_alice, quotes) -> None:
    deploy_sources([("quotes.py", "")])
    page = admin_client_alice.get("/admin/integration/servicemodule/")
    assert b"rejected: quotes.py defines no services" in page.content


def test_manage_py_deploy_refuses_an_empty_file_and_says_what_to_do(tmp_path, quotes, capsys) -> None:
    empty = tmp_path / "quotes.py"
    empty.write_text("")
    with pytest.raises(CommandError, match="1 of 1 files rejected"):
        call_command("deploy", str(empty))
    assert "DELETE /manage/api/v1/modules/quotes/" in capsys.readouterr().err
    assert DeployedService.objects.filter(module=quotes).count() == 2


def test_the_api_refuses_an_empty_upload_with_a_400_that_says_what_to_do(api, quotes) -> None:
    response = api.post(f"{API}/services/", {"filename": "quotes.py", "source": "# emptied\n"}, format="json")
    assert response.status_code == 400
    (message,) = response.json()["details"]["source"]
    assert "defines no services" in message and "DELETE /manage/api/v1/modules/quotes/" in message


def test_a_new_module_without_services_is_still_accepted() -> None:
    # A helper module with constants or functions for other modules: it has nothing to lose.
    (outcome,) = deploy_sources([("helpers.py", "RATE = 3\n")])
    assert outcome.ok and outcome.services == []
    # And so is emptying it again later: it had no services either.
    (again,) = deploy_sources([("helpers.py", "")])
    assert again.ok


def test_nul_characters_in_a_file_are_a_rejection_not_a_crash(quotes) -> None:
    (outcome,) = deploy_sources([("quotes.py", QUOTES + "\x00")])
    assert outcome.error == "quotes.py contains NUL characters: it is not Python source"
    quotes.refresh_from_db()
    assert quotes.source == QUOTES


def test_deleting_a_module_whose_services_are_in_use_is_a_409_naming_the_users(api, quotes) -> None:
    history = DeployedService.objects.get(name="quotes.history")
    jobs.save_job(Job(name="archive", service=history, job_type=Job.JobType.INTERVAL_BASED,
                      start_date=timezone.now() + timedelta(hours=1), hours=1))
    response = api.delete(f"{API}/modules/quotes/")
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["details"] == ("Its services are in use by REST channel `price`, job `archive`; delete them or "
                               "point them at other services first")
    assert [(user["type"], user["name"]) for user in body["dependants"]] == [("REST channel", "price"),
                                                                            ("job", "archive")]
    assert DeployedService.objects.filter(module=quotes).count() == 2  # nothing half-deleted


def test_deleting_a_module_undeploys_it_and_then_an_empty_file_is_accepted(api, client, quotes) -> None:
    RestChannel.objects.all().delete()
    assert api.delete(f"{API}/modules/quotes/").status_code == 204
    assert not ServiceModule.objects.filter(name="quotes").exists()
    assert not DeployedService.objects.filter(name__startswith="quotes.").exists()
    assert api.get(f"{API}/services/quotes.quote/").status_code == 404
    # With nothing deployed, an empty file has nothing to undeploy.
    (outcome,) = deploy_sources([("quotes.py", "")])
    assert outcome.ok


def test_a_built_in_module_cannot_be_deleted(api, builtins) -> None:
    response = api.delete(f"{API}/modules/integration.services.core/")
    assert response.status_code == 409
    assert "built-in module" in response.json()["details"]
    assert ServiceModule.objects.filter(name="integration.services.core").exists()


def test_modules_are_listed_searched_and_filtered(api, quotes, builtins) -> None:
    deploy_sources([("quotes.py", "")])  # rejected: quotes now has a last error
    listing = api.get(f"{API}/modules/?search=quot").json()
    assert [(m["name"], m["services"]) for m in listing["results"]] == [("quotes", ["quotes.history",
                                                                                   "quotes.quote"])]
    assert "source" not in listing["results"][0]  # lists leave the source out; the module's own page has it
    assert api.get(f"{API}/modules/quotes/").json()["source"] == QUOTES
    rejected = api.get(f"{API}/modules/?rejected=true").json()["results"]
    assert [m["name"] for m in rejected] == ["quotes"]
    builtin = api.get(f"{API}/modules/?origin=builtin&page_size=100").json()["results"]
    assert builtin and all(m["origin"] == "builtin" for m in builtin)
    assert api.get(f"{API}/modules/?rejected=maybe").json()["details"] == {"rejected": ["Use true or false."]}
