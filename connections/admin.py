"""Admin for Vault connections. The token and the client key are set here and never shown back.

Each connection has a Ping button (``connections.base.PingAdminMixin``) that asks Vault's
health endpoint and shows the response time or the exact error.

Both are write-only inputs: typing a value replaces the stored one, leaving the input
empty keeps it, and a checkbox removes it. The page says only whether one is stored.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from connections.admin_base import PingAdminMixin
from connections.models import AMQPBroker, OutgoingAMQP, OutgoingFhir, OutgoingRest, VaultConnection
from integration.admin_base import ListingMixin


class SecretTextarea(forms.Textarea):
    """A textarea (PEM keys span lines) that, like PasswordInput, never renders a value back, even after an error."""

    def format_value(self, value: Any) -> None:
        return None


class VaultConnectionForm(forms.ModelForm):
    new_token = forms.CharField(
        label="Token", required=False, strip=True, max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Switchboard's own Vault token, allowed to look up the tokens callers present. "
        "Type one to set it; leave empty to keep the stored one.",
    )
    clear_token = forms.BooleanField(
        label="Remove the stored token", required=False,
        help_text="Tick to delete the stored token; presented tokens then look themselves up (lookup-self).",
    )
    new_tls_client_key = forms.CharField(
        label="TLS client key", required=False, strip=True, max_length=65536,
        widget=SecretTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="PEM private key for the client certificate. Paste one to set it; leave empty to keep the "
        "stored one. It is stored encrypted and never shown again.",
    )
    clear_tls_client_key = forms.BooleanField(
        label="Remove the stored client key", required=False,
        help_text="Tick to delete the stored client key (remove the client certificate with it).",
    )

    class Meta:
        model = VaultConnection
        fields = [
            "name", "is_active", "url", "default_auth_method", "service_name", "mount_point", "github_mount_point",
            "timeout", "cache_ttl", "tls_verify", "tls_ca_cert", "tls_client_cert",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Applied before the model's own validation runs (ModelForm._post_clean), so that
        # "a certificate needs its key" sees the key typed on this very form.
        if data.get("new_token"):
            self.instance.set_token(data["new_token"])
        elif data.get("clear_token"):
            self.instance.set_token("")
        try:
            if data.get("new_tls_client_key"):
                self.instance.set_tls_client_key(data["new_tls_client_key"])
            elif data.get("clear_tls_client_key"):
                self.instance.set_tls_client_key("")
        except ValidationError as exc:
            self.add_error("new_tls_client_key", exc.message_dict.get("tls_client_key", exc.messages))
        return data


@admin.register(VaultConnection)
class VaultConnectionAdmin(ListingMixin, PingAdminMixin):
    form = VaultConnectionForm
    list_display = ["name", "url", "default_auth_method", "service_name", "is_active", "updated"]
    list_filter = ["is_active", "default_auth_method", "tls_verify"]
    search_fields = ["name", "url", "service_name"]
    readonly_fields = ["token_status", "tls_client_key_status"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "url"]}),
        ("Authenticating callers", {"fields": ["default_auth_method", "service_name", "mount_point",
                                               "github_mount_point", "cache_ttl"]}),
        ("Switchboard's Vault token", {"fields": ["token_status", "new_token", "clear_token"]}),
        ("Connection", {"fields": ["timeout", "tls_verify", "tls_ca_cert", "tls_client_cert", "tls_client_key_status",
                                   "new_tls_client_key", "clear_tls_client_key"]}),
    ]

    @admin.display(description="Stored token")
    def token_status(self, obj: VaultConnection | None) -> str:
        return _status(obj is not None and obj.has_token)

    @admin.display(description="Stored client key")
    def tls_client_key_status(self, obj: VaultConnection | None) -> str:
        return _status(obj is not None and obj.has_tls_client_key)


def _status(stored: bool) -> str:
    return "Stored encrypted; never shown." if stored else "None stored."


class AMQPBrokerForm(forms.ModelForm):
    new_password = forms.CharField(
        label="Password", required=False, strip=False, max_length=1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Type one to set it; leave empty to keep the stored one. Never shown again.",
    )
    clear_password = forms.BooleanField(
        label="Remove the stored password", required=False,
        help_text="Tick to delete the stored password: Switchboard then logs in to the broker with the username "
        "and an empty password. A password typed above wins over this box.",
    )

    class Meta:
        model = AMQPBroker
        fields = ["name", "is_active", "host", "port", "vhost", "username", "tls", "tls_verify", "tls_ca_cert",
                  "heartbeat", "timeout"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("new_password"):
            self.instance.set_password(data["new_password"])
        elif data.get("clear_password"):
            self.instance.set_password("")
        return data


@admin.register(AMQPBroker)
class AMQPBrokerAdmin(ListingMixin, PingAdminMixin):
    form = AMQPBrokerForm
    list_display = ["name", "host", "port", "vhost", "username", "tls", "is_active", "updated"]
    list_filter = ["is_active", "tls"]
    search_fields = ["name", "host", "vhost"]


@admin.register(OutgoingAMQP)
class OutgoingAMQPAdmin(ListingMixin, PingAdminMixin):
    list_display = ["name", "broker", "exchange", "routing_key", "delivery_mode", "is_active", "updated"]
    list_filter = ["is_active", "delivery_mode", "broker"]
    search_fields = ["name", "exchange", "routing_key"]
    list_select_related = ["broker"]


class OutgoingHttpForm(forms.ModelForm):
    """The Basic password or API key is write-only: typing one replaces it, empty keeps it, a tick removes it."""

    new_password = forms.CharField(
        label="Password or API key", required=False, strip=False, max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The Basic Auth password or the API key. Type one to set it; leave empty to keep the stored one.",
    )
    clear_password = forms.BooleanField(
        label="Remove the stored password or key", required=False,
        help_text="Tick to delete the stored password or API key: Basic Auth then sends an empty password and "
        "the API key header goes out empty. A password or key typed above wins over this box.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("new_password"):
            self.instance.set_password(data["new_password"])
        elif data.get("clear_password"):
            self.instance.set_password("")
        return data


_HTTP_SECURITY = ["auth_type", "username", "password_status", "new_password", "clear_password", "oauth",
                  "oauth_scopes"]


class OutgoingHttpAdmin(ListingMixin, PingAdminMixin):
    readonly_fields = ["password_status"]
    list_select_related = ["oauth"]
    autocomplete_fields: list[str] = []

    @admin.display(description="Stored password or key")
    def password_status(self, obj: Any) -> str:
        return _status(obj is not None and obj.has_password)


@admin.register(OutgoingRest)
class OutgoingRestAdmin(OutgoingHttpAdmin):
    form = type("OutgoingRestForm", (OutgoingHttpForm,), {"Meta": type("Meta", (), {
        "model": OutgoingRest, "fields": ["name", "is_active", "address", "url_path", "data_format", "default_headers",
                                          "auth_type", "username", "api_key_header", "oauth", "oauth_scopes",
                                          "timeout", "tls_verify", "tls_ca_cert", "pool_size", "ping_method",
                                          "ping_path"]})})
    list_display = ["name", "address", "url_path", "data_format", "auth_type", "is_active", "updated"]
    list_filter = ["is_active", "auth_type", "data_format"]
    search_fields = ["name", "address", "url_path"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "address", "url_path", "data_format", "default_headers"]}),
        ("Security", {"fields": [*_HTTP_SECURITY[:4], "api_key_header", *_HTTP_SECURITY[4:]]}),
        ("Connection", {"fields": ["timeout", "pool_size", "tls_verify", "tls_ca_cert", "ping_method", "ping_path"]}),
    ]


@admin.register(OutgoingFhir)
class OutgoingFhirAdmin(OutgoingHttpAdmin):
    form = type("OutgoingFhirForm", (OutgoingHttpForm,), {"Meta": type("Meta", (), {
        "model": OutgoingFhir, "fields": ["name", "is_active", "address", "auth_type", "username", "oauth",
                                          "oauth_scopes", "timeout", "tls_verify", "tls_ca_cert"]})})
    list_display = ["name", "address", "auth_type", "is_active", "updated"]
    list_filter = ["is_active", "auth_type"]
    search_fields = ["name", "address"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "address"]}),
        ("Security", {"fields": _HTTP_SECURITY}),
        ("Connection", {"fields": ["timeout", "tls_verify", "tls_ca_cert"]}),
    ]
# LDAP, SFTP and FTP connections register their admins in their own module.
from connections import directory_admin  # noqa: E402, F401
