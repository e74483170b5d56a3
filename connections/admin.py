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
from connections.models import VaultConnection


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
class VaultConnectionAdmin(PingAdminMixin, admin.ModelAdmin):
    form = VaultConnectionForm
    list_display = ["name", "url", "default_auth_method", "service_name", "is_active", "updated"]
    list_filter = ["is_active", "default_auth_method", "tls_verify"]
    search_fields = ["name", "url", "service_name"]
    list_per_page = 50
    show_full_result_count = False
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


# LDAP, SFTP and FTP connections register their admins in their own module.
from connections import directory_admin  # noqa: E402, F401
