"""Channels layer backends: the transport Django Channels uses to carry pushes between processes.

Not Switchboard channels (those are ``integration.channels``): a layer is what
``CHANNEL_LAYERS["default"]["BACKEND"]`` names. ``SQLiteChannelLayer`` is the embedded
default without Redis (``integration.channel_layers.SQLiteChannelLayer``); how it works is in
the docstring of ``integration.channel_layers.layer``.
"""

from .layer import SQLiteChannelLayer

__all__ = ["SQLiteChannelLayer"]
