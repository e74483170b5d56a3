"""Fixtures shared by several test modules of this folder."""

from .channel_layer_helpers import (  # noqa: F401 - fixtures of the SQLite channel layer tests
    _no_peer_outlives_its_test,
    path,
)
