"""ASGI entry point (daphne): HTTP through Django, WebSocket channels through their one consumer.

WebSocket handshakes pass the origin policy first (``integration.channels.ws_routing``:
pages from allowed origins, and programs that send no Origin), then reach
``integration.channels.websocket``, which refuses paths that are not active channels.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from integration import poller, snapshot  # noqa: E402
from integration.channels.websocket import websocket_application  # noqa: E402

snapshot.warm()
poller.ensure_poller()
application = ProtocolTypeRouter({"http": django_asgi, "websocket": websocket_application()})
