"""zato-websocket-client 1.6.1, unchanged, against WebSocket channels served by a real daphne process.

Each test gets a channel-layer prefix of its own, so parallel test processes sharing one
Redis database never see each other's groups. Tests are transactional: the consumer's
threads write and read rows on their own database connections. The fixtures (``app``,
``ws_channel``, ``jwt_channel``, ``basic_channel``) are in ``conftest.py``; the demo services
and the communicator helpers in ``ws_helpers.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ws_helpers import (
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


ZATO_PYTHON = Path(os.environ.get("ZATO_CLIENT_PYTHON", "var/zato-client-venv/bin/python"))
ZATO_SCRIPT = """
import json, sys
from zato.websocket.client import Client, Config

address, username, secret, wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pushed = []

def on_request(request):
    pushed.append(request.data)
    return {"thanks": True}

config = Config(client_name="switchboard-test", client_id="t1", address=address, username=username,
                secret=secret, on_request_callback=on_request, wait_time=wait)
client = Client(config)
client.run(max_wait=wait)
if not client.is_authenticated:
    print(json.dumps({"authenticated": False}))
    sys.exit(0)
first = client.invoke({"n": 1})
second = client.invoke({"service": "ws-demo.classic", "request": {"name": "Zato"}})
failed = client.invoke({"service": "ws-demo.slow", "request": 0})
client.invoke({"service": "ws-demo.notify", "request": {"data": {"pushed": 1}}})
from gevent import sleep
for _ in range(100):
    if pushed:
        break
    sleep(0.05)
print(json.dumps({
    "authenticated": True,
    "first": [first.status, first.data, first.in_reply_to.split(".")[3]],
    "second": [second.status, second.data],
    "failed": [failed.status, failed.is_ok, failed.data],
    "pushed": pushed,
}))
client.stop()
"""


@pytest.fixture
def server_env_ws(transactional_db: None, layer: str, tmp_path: Path, settings: Any) -> dict[str, str]:
    """The environment for a daphne process on this test's database and channel-layer prefix."""
    from tests.servers.web import database_url

    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "VAR_DIR": str(var_dir),
        "PICKUP_DIR": str(tmp_path / "pickup"),
        "SECRET_KEY": settings.SECRET_KEY,
        "CHANNEL_LAYER_PREFIX": layer,
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def daphne(env: dict[str, str], tmp_path: Path) -> Any:
    """A daphne process serving config.asgi on a free port of 127.0.0.1; yields the port, stops it after."""
    import socket

    from tests.servers.procs import ManagedProcess, free_port, wait_for

    port = free_port()
    process = ManagedProcess([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                              "config.asgi:application"], env=env, log_path=tmp_path / "daphne.log").start()

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {process.log_tail()}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(serving, 30, message=lambda: process.log_tail())
        yield port
    finally:
        process.stop()


@pytest.mark.e2e
def test_zatos_own_websocket_client_works_unchanged(app, jwt_channel, server_env_ws, tmp_path) -> None:
    """zato-websocket-client 1.6.1, from a virtualenv of its own, against a real daphne process."""
    python = ZATO_PYTHON if ZATO_PYTHON.is_absolute() else Path(__file__).resolve().parents[2] / ZATO_PYTHON
    if not python.exists():
        pytest.skip(f"zato-websocket-client's virtualenv is not at {python} (`make test` builds it; "
                    "or set ZATO_CLIENT_PYTHON)")
    channel, definition = jwt_channel
    channel.allowed_services = "ws-demo.classic\nws-demo.notify"
    channel.save()
    token = token_for(definition)
    script = tmp_path / "zato_client.py"
    script.write_text(textwrap.dedent(ZATO_SCRIPT))
    with daphne(server_env_ws, tmp_path) as port:
        address = f"ws://127.0.0.1:{port}/ws/events"
        done = subprocess.run([str(python), str(script), address, "frontend", token, "10"],
                              capture_output=True, text=True, timeout=60, check=False)
        # A wrong secret: the client waits its `wait_time` for an answer to create-session, in vain.
        bad = subprocess.run([str(python), str(script), address, "frontend", "wrong", "1"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["authenticated"] is True
    assert result["first"][0] == 200 and result["first"][1]["echo"] == {"n": 1}
    assert result["first"][1]["user"] == "frontend" and result["first"][2] == "invs"
    assert result["second"] == [200, {"greeting": "Hello Zato"}]
    assert result["failed"][0] == 403 and result["failed"][1] is False
    assert result["failed"][2]["details"] == "Service `ws-demo.slow` is not allowed on this channel"
    assert result["pushed"] == [{"pushed": 1}]
    assert json.loads(bad.stdout.strip().splitlines()[-1]) == {"authenticated": False}
