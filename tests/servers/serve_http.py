"""The entry point of a loopback HTTP server process: ``python -m tests.servers.serve_http``.

The configuration is one JSON object in the environment variable ``LOOPBACK_SERVER_CONFIG``
(not the command line, which any local user can read): ``kind`` (oauth, rest or fhir),
``port`` and ``internal_port``, ``tls`` (``{"cert": path, "key": path}`` or null), ``app``
(the app's own configuration) and ``max_lifetime`` in seconds.

The process serves until SIGTERM or SIGINT, until ``max_lifetime`` has passed, or until its
parent (the pytest process) is gone, so a crashed test run leaves no server behind. A port
that is already taken makes it exit with status 3 at once, and the parent tries other ports.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import ssl
import sys
import threading
import time
from typing import Any

from tests.servers.fhir import FhirApp
from tests.servers.loopback import App, LoopbackServer
from tests.servers.oauth import OAuthApp
from tests.servers.rest_backend import RestBackendApp

CONFIG_ENV = "LOOPBACK_SERVER_CONFIG"
PORT_TAKEN_EXIT = 3
APPS: dict[str, type[App]] = {"oauth": OAuthApp, "rest": RestBackendApp, "fhir": FhirApp}


def build(config: dict[str, Any]) -> LoopbackServer:
    """The server described by ``config`` (not started)."""
    app = APPS[config["kind"]](config.get("app") or {})  # type: ignore[call-arg]
    tls = None
    if config.get("tls"):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(config["tls"]["cert"], config["tls"]["key"])
    return LoopbackServer(app, port=config.get("port", 0), internal_port=config.get("internal_port", 0), tls=tls)


def main() -> int:
    config = json.loads(os.environ[CONFIG_ENV])
    server = build(config)
    try:
        server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"port taken: {exc}", flush=True)
            return PORT_TAKEN_EXIT
        raise
    print(f"{config['kind']} serving {server.url} (internal {server.internal_url}), pid {os.getpid()}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    deadline = time.monotonic() + float(config.get("max_lifetime", 3600))
    while not stop.wait(0.5):
        if os.getppid() != parent:
            print("parent process gone: stopping", flush=True)
            break
        if time.monotonic() > deadline:
            print("max_lifetime reached: stopping", flush=True)
            break
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
