"""``manage.py serve``'s HTTP server command line (``granian_argv``) and the settings behind it.

The command line itself is exercised for real by every end-to-end test: ``WebServer`` runs it.
"""

from __future__ import annotations

import os
import sys

from integration.management.commands.serve import granian_argv
from tests.servers.procs import run_manage


def test_the_web_server_command_line_carries_the_settings(settings) -> None:
    settings.WEB_BLOCKING_THREADS, settings.WEB_BACKPRESSURE, settings.WEB_HEADER_READ_TIMEOUT = 3, 200, 2.5
    argv = granian_argv(sys.executable, 8123, 4)
    assert argv[:3] == [sys.executable, "-m", "granian"]
    assert argv[-1] == "config.wsgi:application"
    options = " ".join(argv[3:-1])
    for expected in ("--interface wsgi", "--host 127.0.0.1", "--port 8123", "--workers 4", "--blocking-threads 3",
                     "--backpressure 200", "--http1-header-read-timeout 2500", "--respawn-failed-workers",
                     "--workers-kill-timeout 10"):
        assert expected in options, expected
    # Keywords override a setting (tests and benchmarks), the rest still comes from settings.
    shorter = " ".join(granian_argv(sys.executable, 8123, 1, header_read_timeout=0.2, app="bench.wsgi:application"))
    assert "--http1-header-read-timeout 200 " in shorter and "--blocking-threads 3 " in shorter
    assert shorter.endswith(" bench.wsgi:application")


def test_a_header_read_timeout_granian_would_refuse_stops_the_start(tmp_path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path), "WEB_HEADER_READ_TIMEOUT": "61"}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "WEB_HEADER_READ_TIMEOUT must be at most 60 seconds, got 61.0" in result.stderr
