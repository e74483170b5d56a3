"""``python manage.py deploy FILE`` in its own process, on the test's database."""

from __future__ import annotations

import textwrap

import pytest

from integration.models import DeployedService, ServiceModule

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GOOD = textwrap.dedent("""\
    from integration.services import Service


    class One(Service):
        def handle(self):
            self.response.payload = {"one": 1}


    class Two(Service):
        name = "e2e.cli-two"

        def handle(self):
            self.response.payload = {"two": 2}
    """)

# Same module name, with the colon of `def handle(self)` missing on line 5.
BROKEN = GOOD.replace("def handle(self):", "def handle(self)", 1)


def test_the_deploy_command_deploys_a_good_file_and_rejects_a_broken_one_keeping_the_previous(manage, tmp_path):
    good = tmp_path / "good" / "cli_module.py"
    good.parent.mkdir()
    good.write_text(GOOD)
    result = manage("deploy", str(good))
    assert result.returncode == 0, result.stderr
    # `One` gets Zato's name from module and class (cli_module.py -> cli-module.one).
    assert f"{good}: deployed: cli-module.one, e2e.cli-two" in result.stdout, result.stdout

    broken = tmp_path / "broken" / "cli_module.py"
    broken.parent.mkdir()
    broken.write_text(BROKEN)
    result = manage("deploy", str(broken))
    assert result.returncode != 0
    assert f"{broken}: rejected: Syntax error in {broken}, line 5" in result.stderr, result.stderr
    assert "1 of 1 files rejected; the previous versions keep serving" in result.stderr, result.stderr

    module = ServiceModule.objects.get(name="cli_module")
    assert module.source == GOOD
    assert module.origin == ServiceModule.Origin.CLI
    assert module.last_error.startswith(f"Syntax error in {broken}, line 5"), module.last_error
    assert sorted(DeployedService.objects.filter(module=module).values_list("name", flat=True)) == [
        "cli-module.one",
        "e2e.cli-two",
    ]
