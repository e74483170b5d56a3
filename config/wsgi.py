"""WSGI entry point (gunicorn): REST channels fast, reserved paths through Django."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.wsgi import get_wsgi_application

django_application = get_wsgi_application()

from integration import snapshot  # noqa: E402
from integration.channels.rest import WSGIApplication  # noqa: E402

snapshot.warm()
application = WSGIApplication(django_application)
