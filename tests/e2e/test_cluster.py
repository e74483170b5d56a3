"""Several server processes on one database: a change made through one is served by the others.

Each process keeps a compiled snapshot of the configuration and polls the configuration
version every CONFIG_POLL_INTERVAL (0.25 s); a write bumps that version in its own
transaction. So another process serves a new channel within one poll interval plus the
time to rebuild its snapshot: well under the one second asserted here.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.conftest import token_header
from tests.servers.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ADMIN_PASSWORD = "e2e-admin-password-1"


def create_admin_for_servers(username: str, password: str) -> Any:
    """A superuser whose password the server processes can check.

    tests/conftest.py makes this process hash passwords with MD5 (fast), a hasher the
    servers' settings do not list; so the hash is made with Django's default hasher here.
    """
    hasher = PBKDF2PasswordHasher()
    user = get_user_model().objects.create_superuser(username, f"{username}@example.com", None)
    user.password = hasher.encode(password, hasher.salt())
    user.save(update_fields=["password"])
    return user


def test_a_channel_created_through_one_server_is_served_by_another_within_a_second(start_web, builtins):
    admin = create_admin_for_servers("e2e-admin", ADMIN_PASSWORD)
    server_a = start_web(workers=1)
    server_b = start_web(workers=1)
    assert server_a.pid != server_b.pid
    # Nothing is bound to the path yet, in either process.
    assert server_a.get("/e2e/cross").status == 404
    assert server_b.get("/e2e/cross").status == 404

    reply = server_a.request(
        "POST",
        "/manage/api/v1/channels/rest/",
        json={"name": "e2e cross-process", "url_path": "/e2e/cross", "method": "GET", "service": "demo.hello"},
        headers={"Authorization": token_header(admin)},  # the management API takes API tokens
    )
    created_at = time.monotonic()
    assert reply.status == 201, reply.text

    def served_by_b() -> bool:
        return server_b.get("/e2e/cross?name=Bea", timeout=2).status == 200

    wait_for(served_by_b, timeout=5, interval=0.01, message=lambda: f"server B never served it\n{server_b.log_tail()}")
    elapsed = time.monotonic() - created_at
    print(f"server B served the new channel {elapsed:.3f} s after server A answered")
    assert elapsed < 1.0, f"server B served the new channel only after {elapsed:.2f} s"
    assert server_b.get("/e2e/cross?name=Bea").json()["hello"] == "Bea"
    # Server A refreshed itself on commit, before it even answered the API call.
    assert server_a.get("/e2e/cross?name=Al").json()["hello"] == "Al"
