from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save


class IntegrationConfig(AppConfig):
    """Services and channels: owns the snapshot, and the registries of channel and security types."""

    name = "integration"
    verbose_name = "Services and channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integration import api_routes, signals, snapshot
        from integration.api import ModuleViewSet, RestChannelViewSet, ServiceViewSet, WebSocketChannelViewSet
        from integration.channels import base
        from integration.channels.routing import RestChannelType
        from integration.channels.ws_routing import WebSocketChannelType

        signals.on_change(snapshot.changed)
        post_save.connect(signals.config_saved, dispatch_uid="switchboard-config-saved")
        post_delete.connect(signals.config_saved, dispatch_uid="switchboard-config-deleted")
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="switchboard-after-migrate")
        base.register(RestChannelType())
        base.register(WebSocketChannelType())
        from integration.channels.files import FileChannelType

        base.register(FileChannelType())
        from integration.channels.amqp import AMQPChannelType

        base.register(AMQPChannelType())
        from integration.api import AMQPChannelViewSet, FileChannelViewSet

        api_routes.register("channels/file", FileChannelViewSet, basename="file-channel")
        api_routes.register("channels/amqp", AMQPChannelViewSet, basename="amqp-channel")
        api_routes.register("services", ServiceViewSet, basename="service")
        api_routes.register("modules", ModuleViewSet, basename="module")
        api_routes.register("channels/rest", RestChannelViewSet, basename="rest-channel")
        api_routes.register("channels/websocket", WebSocketChannelViewSet, basename="websocket-channel")


def _after_migrate(**kwargs: Any) -> None:
    from integration.deploy import sync_builtin

    sync_builtin()
