"""The admin for services, channels and definitions: listings, search and the Invoke page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/integration/deployedservice/",
        "/admin/integration/servicemodule/",
        "/admin/integration/restchannel/",
        "/admin/integration/restchannel/add/",
        "/admin/accounts/basicauth/",
        "/admin/accounts/basicauth/add/",
        "/admin/accounts/techaccount/",
        "/admin/accounts/techaccount/add/",
        "/admin/accounts/apikey/",
        "/admin/accounts/apikey/add/",
        "/admin/accounts/jwtdefinition/",
        "/admin/accounts/jwtdefinition/add/",
    ],
)
def test_admin_pages_render(admin_client_alice, builtins, url) -> None:
    assert admin_client_alice.get(url).status_code == 200


def test_the_service_list_searches_and_paginates(admin_client_alice, deploy) -> None:
    source = "from integration.services import Service\n" + "".join(
        f"class S{i:03d}(Service):\n    pass\n" for i in range(120)
    )
    deploy("many.py", source)
    # "many.s0" matches s000..s099; 50 rows a page, so page one ends at s049.
    page = admin_client_alice.get("/admin/integration/deployedservice/?q=many.s0")
    assert b"many.s000" in page.content
    assert b"many.s049" in page.content
    assert b"many.s050" not in page.content
    second = admin_client_alice.get("/admin/integration/deployedservice/?q=many.s0&p=2")
    assert b"many.s050" in second.content
    assert b"many.s100" not in second.content  # filtered out by the search


def test_a_rejected_module_shows_its_error_in_the_admin(admin_client_alice, db) -> None:
    from integration.deploy import deploy_sources

    deploy_sources([("broken.py", "def (:\n")])
    page = admin_client_alice.get("/admin/integration/servicemodule/")
    assert b"rejected: Syntax error in broken.py, line 1" in page.content


def test_the_invoke_page_shows_response_status_cid_and_time(admin_client_alice, builtins) -> None:
    from integration.models import DeployedService

    service = DeployedService.objects.get(name="demo.get-customer")
    url = f"/admin/integration/deployedservice/{service.pk}/invoke/"
    assert admin_client_alice.get(url).status_code == 200
    page = admin_client_alice.post(url, {"payload": '{"customer_id": 3}'}).content.decode()
    assert 'id="invoke-status">200<' in page
    assert "Customer 3" in page
    assert 'id="invoke-cid">' in page
    bad = admin_client_alice.post(url, {"payload": "{not json"}).content.decode()
    assert "Not valid JSON" in bad
    missing = admin_client_alice.post(url, {"payload": "{}"}).content.decode()
    assert 'id="invoke-status">400<' in missing
    assert "Element missing: customer_id" in missing


def test_a_basic_auth_password_set_in_the_admin_is_hashed_and_not_shown(admin_client_alice) -> None:
    from accounts import crypto
    from accounts.models import BasicAuth

    response = admin_client_alice.post("/admin/accounts/basicauth/add/", {
        "name": "crm", "username": "crm", "realm": "CRM", "is_active": "on", "initial_password": "typed-in-admin",
    })
    assert response.status_code == 302
    definition = BasicAuth.objects.get(name="crm")
    assert crypto.check_password("typed-in-admin", definition.password_hash).ok
    page = admin_client_alice.get(f"/admin/accounts/basicauth/{definition.pk}/change/").content.decode()
    assert "typed-in-admin" not in page and definition.password_hash not in page
