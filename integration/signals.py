"""Every saved or deleted configuration row bumps the configuration version.

``CONFIG_MODELS`` lists the models whose rows feed the snapshot; later apps add theirs
(``config_model`` decorator). Bulk ``update()``/``bulk_create`` do not send signals:
code that uses them calls ``changed()`` itself.

This module imports nothing of Switchboard's, so every app may use it: ``changed()`` calls
the listeners registered with ``on_change`` (``integration.snapshot.changed``, which bumps
the version and refreshes this process on commit, registered in ``IntegrationConfig.ready``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

CONFIG_MODELS: list[type] = []
_batch = threading.local()
_listeners: list[Callable[[], None]] = []


def config_model(model: type) -> type:
    CONFIG_MODELS.append(model)
    return model


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` on every configuration change (once per ``one_change`` block)."""
    if listener not in _listeners:
        _listeners.append(listener)


def changed() -> None:
    """Record a configuration change: tell every listener (the snapshot bumps the version)."""
    if getattr(_batch, "depth", 0):
        _batch.dirty = True
        return
    for listener in _listeners:
        listener()


def config_saved(sender: type, **kwargs: Any) -> None:
    if sender and any(issubclass(sender, model) for model in CONFIG_MODELS):
        changed()


@contextmanager
def one_change() -> Iterator[None]:
    """Count every configuration write inside the block as one change (one version bump)."""
    _batch.depth = getattr(_batch, "depth", 0) + 1
    try:
        yield
    finally:
        _batch.depth -= 1
    if _batch.depth == 0 and getattr(_batch, "dirty", False):
        _batch.dirty = False
        changed()
