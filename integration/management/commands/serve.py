"""``python manage.py serve``: start the whole platform in one command and stop it with Ctrl-C.

Children: granian (HTTP: admin, management API, REST channels) on ``PORT``, daphne
(WebSocket channels) on ``WEBSOCKET_PORT``, the file watcher (``watch_files``), the AMQP
consumer (``consume_amqp``), a Celery worker and one Celery beat, all bound to 127.0.0.1.
Each runs in its own process group; SIGINT or SIGTERM to this command, or any
child exiting, stops them all.

Why two servers: granian's WSGI interface serves REST about twice as fast as gunicorn's sync
workers and many times faster than daphne, and its asynchronous front end keeps slow clients
from holding a Python thread; but WSGI cannot hold WebSockets, and daphne holds thousands of
idle sockets in one process. Pages learn where the sockets are from
``integration.services.websocket.websocket_url`` (the request's host at ``WEBSOCKET_PORT``, or
``WEBSOCKET_PUBLIC_URL`` behind a load balancer that routes upgrades to daphne). Daphne serves
HTTP as well, more slowly; nothing needs it to.

``granian_argv`` and ``daphne_argv`` are the two command lines; the end-to-end tests start
their servers with these very functions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

HOST = "127.0.0.1"


def daphne_argv(python: str, port: int, max_message_size: int) -> list[str]:
    """Daphne's command line, as serve runs it (the end-to-end tests run this very one).

    * ``--websocket_timeout -1``: daphne would otherwise close every connection after a day;
      channels have their own idle timeout.
    * ``--websocket-max-message-size`` (and the frame size): daphne refuses larger messages
      with a close frame 1009 before a channel sees them; above each channel's
      ``max_message_size`` the channel answers for itself (an error message, then 4009).
    * Pings: ``WEBSOCKET_PING_INTERVAL`` and ``WEBSOCKET_PING_TIMEOUT``, for every channel.
    * ``config.websocket_server`` is daphne's own command line with one change: a connection
      that breaks those limits (or the WebSocket protocol) ends with a close frame saying
      why (1009) instead of a dropped TCP connection (1006); see that module.
    """
    return [
        python, "-m", "config.websocket_server", "-b", HOST, "-p", str(port),
        "--websocket_timeout", "-1",
        "--websocket-max-message-size", str(max_message_size),
        "--websocket-max-frame-size", str(max_message_size),
        "--ping-interval", str(settings.WEBSOCKET_PING_INTERVAL),
        "--ping-timeout", str(settings.WEBSOCKET_PING_TIMEOUT),
        "config.asgi:application",
    ]


WSGI_APP = "config.wsgi:application"


def granian_argv(
    python: str,
    port: int,
    workers: int,
    *,
    host: str = HOST,
    app: str = WSGI_APP,
    blocking_threads: int | None = None,
    backpressure: int | None = None,
    header_read_timeout: float | None = None,
) -> list[str]:
    """granian's command line for the HTTP server, as serve runs it (and the end-to-end tests).

    Each option's default is its setting (``WEB_BLOCKING_THREADS``, ``WEB_BACKPRESSURE``,
    ``WEB_HEADER_READ_TIMEOUT``); the keywords let a test or a benchmark change one.

    * ``--interface wsgi``: ``config.wsgi`` (REST channel paths straight to the dispatcher,
      the rest to Django). Each worker imports it itself: nothing is loaded before the fork.
    * ``--blocking-threads``: Python threads per worker running requests. granian's default
      (half the backpressure, hundreds) would mean hundreds of database connections.
    * ``--backpressure``: connections a worker holds at once, idle keep-alive ones included.
    * ``--http1-header-read-timeout``: a client that has not sent its headers by then (a
      slow-loris client) is disconnected; idle keep-alive connections close after it too.
    * ``--respawn-failed-workers``: a worker that dies (OOM kill, crash) is replaced at once;
      the new one checks the configuration version before its first request. granian gives
      up (and exits) when a worker dies again within about 5 s of its respawn.
    * ``--workers-kill-timeout 10``: on stop, requests still running after 10 s are cut.
    * Keep-alive is on (granian's default); no access log, as before.
    """
    threads = settings.WEB_BLOCKING_THREADS if blocking_threads is None else blocking_threads
    held = settings.WEB_BACKPRESSURE if backpressure is None else backpressure
    timeout = settings.WEB_HEADER_READ_TIMEOUT if header_read_timeout is None else header_read_timeout
    return [
        python, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
        "--workers", str(workers),
        "--blocking-threads", str(threads),
        "--backpressure", str(held),
        "--http1-header-read-timeout", str(max(1, round(timeout * 1000))),
        "--respawn-failed-workers",
        "--workers-kill-timeout", "10",
        "--no-ws",
        "--no-access-log",
        app,
    ]


def daphne_message_limit() -> int:
    """``WEBSOCKET_MAX_MESSAGE_SIZE``, or more when a channel allows more (read once, at start).

    One byte over a channel's limit must still reach the channel, which closes with 4009 and
    says why; daphne's own 1009 says nothing. A channel raised above this later is enforced
    by daphne's limit until the next start.
    """
    from django.db import DatabaseError
    from django.db.models import Max

    from integration.models import WebSocketChannel

    try:
        largest = WebSocketChannel.objects.aggregate(largest=Max("max_message_size"))["largest"] or 0
    except DatabaseError:
        largest = 0
    return max(settings.WEBSOCKET_MAX_MESSAGE_SIZE, largest + 1)


class Command(BaseCommand):
    help = "Run the web server, the WebSocket server, a Celery worker and beat until interrupted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-celery", action="store_true", help="Start only the web and WebSocket servers.")

    def handle(self, *args: Any, no_celery: bool = False, **options: Any) -> None:
        python = sys.executable
        if settings.WEBSOCKET_PORT == settings.PORT:
            raise CommandError(f"PORT and WEBSOCKET_PORT are both {settings.PORT}: granian and daphne need one each")
        env = {
            **os.environ, "PORT": str(settings.PORT), "WEB_WORKERS": str(settings.WEB_WORKERS),
            "WEBSOCKET_PORT": str(settings.WEBSOCKET_PORT),  # pages served by granian point browsers there
        }
        commands = [
            ("web", granian_argv(python, settings.PORT, settings.WEB_WORKERS)),
            ("websockets", daphne_argv(python, settings.WEBSOCKET_PORT, daphne_message_limit())),
        ]
        # File channels (watch_files) and AMQP channels (consume_amqp): one long-lived process each.
        commands += [
            ("files", [python, "manage.py", "watch_files"]),
            ("amqp", [python, "manage.py", "consume_amqp"]),
        ]
        if not no_celery:
            commands += [
                ("worker", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                            "--concurrency", "2", "--without-mingle", "--without-gossip"]),
                ("beat", [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                          "--pidfile", str(settings.VAR_DIR / "celerybeat.pid")]),
            ]
        children: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, command in commands:
            children[name] = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, start_new_session=True)
        self.stdout.write(
            f"Switchboard is starting at http://{HOST}:{settings.PORT}/ (admin: /admin/), WebSocket channels at "
            f"ws://{HOST}:{settings.WEBSOCKET_PORT}/ (try http://{HOST}:{settings.PORT}/demo/notifications); "
            "Ctrl-C stops it."
        )
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping the rest.")
                        stopping = True
                        break
                time.sleep(0.2)
        finally:
            # SIGTERM to each child's main process only: granian and Celery stop their own
            # workers. Signalling the whole group can kill a Celery pool process while it
            # holds a shared lock and hang the worker's shutdown.
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        self.stdout.write("Switchboard stopped.")
