"""Fixtures shared by several test modules of this folder."""

from .channel_layer_helpers import (  # noqa: F401 - fixtures of the SQLite channel layer tests
    _no_peer_outlives_its_test,
    path,
)
from .ws_helpers import (  # noqa: F401 - fixtures of the WebSocket tests (test_websocket*.py)
    app,
    basic_channel,
    jwt_channel,
    layer,
    ws_channel,
)
