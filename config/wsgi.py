"""WSGI entry point (granian, ``manage.py serve``): REST channels fast, reserved paths through Django.

granian imports this module in each worker process, after forking: every worker builds its
own configuration snapshot here. ``WSGIApplication`` still checks the configuration version
before a process's first request (``poller.ensure_poller``), because the snapshot built at
import can be older than the configuration by the time the first request arrives, and under
a server that imports before forking (gunicorn's ``preload_app``) it is the parent's.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.wsgi import get_wsgi_application

django_application = get_wsgi_application()

from integration import snapshot  # noqa: E402
from integration.channels.rest import WSGIApplication  # noqa: E402

snapshot.warm()
application = WSGIApplication(django_application)
