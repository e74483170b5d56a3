"""``python manage.py serve``: start the whole platform in one command and stop it with Ctrl-C.

Children: gunicorn (HTTP: admin, management API, REST channels) on ``PORT``, a Celery
worker and one Celery beat. Each runs in its own process group; SIGINT or SIGTERM to
this command, or any child exiting, stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run web server, Celery worker and beat until interrupted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-celery", action="store_true", help="Start only the web server.")

    def handle(self, *args: Any, no_celery: bool = False, **options: Any) -> None:
        python = sys.executable
        env = {**os.environ, "PORT": str(settings.PORT), "WEB_WORKERS": str(settings.WEB_WORKERS)}
        commands = [
            ("web", [python, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application"]),
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
        self.stdout.write(f"Switchboard is starting at http://127.0.0.1:{settings.PORT}/ (admin: /admin/); "
                          "Ctrl-C stops it.")
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping the rest.")
                        stopping = True
                        break
                time.sleep(0.2)
        finally:
            # SIGTERM to each child's main process only: gunicorn and Celery stop their own
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
