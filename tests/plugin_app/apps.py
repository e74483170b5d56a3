"""A plug-in app made for the tests: one security type and one connection type, registered here only.

It shows the recipe of the README ("Adding a security type / connection type"): a model, a
compiled class meeting the contract, and one registration in ``ready()``. Nothing in
``integration``, ``accounts`` or ``connections`` names it.
"""

from django.apps import AppConfig


class PluginAppConfig(AppConfig):
    name = "tests.plugin_app"
    label = "plugin_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from connections import base
        from integration.channels import security
        from tests.plugin_app.types import EchoClient, ShoutAuthentication

        security.register(security.SecurityType("shout", "Shouted word", "plugin_app.ShoutDefinition",
                                                ShoutAuthentication.from_definition))
        base.register(base.ConnectionType("echo", "Echo", "plugin_app.EchoConnection", EchoClient.from_definition,
                                          aliases=("test.echo",)))
