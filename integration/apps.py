from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Services and channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integration import signals

        post_save.connect(signals.config_saved, dispatch_uid="switchboard-config-saved")
        post_delete.connect(signals.config_saved, dispatch_uid="switchboard-config-deleted")
        post_migrate.connect(signals.after_migrate, sender=self, dispatch_uid="switchboard-after-migrate")
