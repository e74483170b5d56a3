"""ASGI entry point (daphne): HTTP through Django; WebSocket routes come with the WebSocket issue."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from integration import snapshot  # noqa: E402

snapshot.warm()
snapshot.ensure_poller()
application = ProtocolTypeRouter({"http": django_asgi})
