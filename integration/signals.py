"""Every saved or deleted configuration row bumps the configuration version.

``CONFIG_MODELS`` lists the models whose rows feed the snapshot; later apps add theirs
(``config_model`` decorator). Bulk ``update()``/``bulk_create`` do not send signals:
code that uses them calls ``integration.snapshot.changed()`` itself.
"""

from __future__ import annotations

from typing import Any

CONFIG_MODELS: list[type] = []


def config_model(model: type) -> type:
    CONFIG_MODELS.append(model)
    return model


def config_saved(sender: type, **kwargs: Any) -> None:
    if sender and any(issubclass(sender, model) for model in CONFIG_MODELS):
        from integration import snapshot

        snapshot.changed()


def after_migrate(**kwargs: Any) -> None:
    from integration.deploy import sync_builtin

    sync_builtin()
