"""Every saved or deleted configuration row bumps the configuration version.

``CONFIG_MODELS`` lists the models whose rows feed the snapshot; later apps add theirs
(``config_model`` decorator). Bulk ``update()``/``bulk_create`` do not send signals:
code that uses them calls ``integration.snapshot.changed()`` itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CONFIG_MODELS: list[type] = []
_batch = threading.local()


def config_model(model: type) -> type:
    CONFIG_MODELS.append(model)
    return model


def config_saved(sender: type, **kwargs: Any) -> None:
    if sender and any(issubclass(sender, model) for model in CONFIG_MODELS):
        if getattr(_batch, "depth", 0):
            _batch.dirty = True
            return
        from integration import snapshot

        snapshot.changed()


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
        from integration import snapshot

        snapshot.changed()


def after_migrate(**kwargs: Any) -> None:
    from integration.deploy import sync_builtin

    sync_builtin()
