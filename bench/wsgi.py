"""WSGI entry point of the throughput benchmark: config/wsgi.py plus a /bench/ route to Django.

Paths under ``/bench/`` go to Django's full handler (middleware, URL resolver, view);
every other path goes to the platform's ``WSGIApplication`` exactly as in production
(REST channels straight to the dispatcher, reserved paths to Django).
"""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from django.core.wsgi import get_wsgi_application

django_application = get_wsgi_application()

from integration import snapshot  # noqa: E402
from integration.channels.rest import WSGIApplication  # noqa: E402

snapshot.warm()
platform_application = WSGIApplication(django_application)


def application(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO", "").startswith("/bench/"):
        return django_application(environ, start_response)
    return platform_application(environ, start_response)
