"""Fixtures for end-to-end tests: real web server processes (granian) on the test's own PostgreSQL database.

Server processes read what the test writes, so tests using them are transactional
(``@pytest.mark.django_db(transaction=True)``): rows are committed, and pytest-django
empties the tables afterwards. The server fixtures depend on ``transactional_db`` so they
are torn down (processes stopped, connections closed) before that flush runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.servers.procs import run_manage
from tests.servers.web import WebServer, database_url


@pytest.fixture
def pickup_dir(tmp_path: Path) -> Path:
    """An empty pickup directory that the servers of this test watch."""
    directory = tmp_path / "pickup"
    directory.mkdir()
    return directory


@pytest.fixture
def server_env(transactional_db: None, tmp_path: Path, pickup_dir: Path) -> dict[str, str]:
    """The environment for a server or ``manage.py`` process that shares this test's database.

    The test's environment, plus the test database's URL (its NAME is only known once
    pytest-django has created it), the test's pickup directory and a private VAR_DIR.
    SECRET_KEY is the test process's, so anything encrypted with it reads the same on both sides.
    """
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "PICKUP_DIR": str(pickup_dir),
        "VAR_DIR": str(var_dir),
        "SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_web(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Start web servers on this test's database: ``start_web(workers=2)`` -> a serving ``WebServer``.

    Keyword arguments are environment variables for the server; ``options`` go to its command
    line (``serve.granian_argv``: ``options={"header_read_timeout": 2}``). Every server started
    is stopped at teardown (SIGTERM to its process group, then SIGKILL).
    """
    servers: list[WebServer] = []

    def _start(workers: int = 2, options: dict[str, Any] | None = None, **env: str) -> WebServer:
        name = f"web{len(servers)}"
        server = WebServer({**server_env, **env}, workers=workers, log_dir=tmp_path / "logs", name=name,
                           **(options or {}))
        servers.append(server)
        return server.start()

    yield _start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def manage(server_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python manage.py ARGS`` in a subprocess on this test's database (bounded: 60 s)."""

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_manage(server_env, *args)

    return _run
