"""Admin for LDAP, SFTP and FTP connections: listings, Ping buttons, "Change password", the SFTP command shell.

Passwords are never shown: the change page says whether one is stored and links to a
"Change password" page (the new one typed twice; ``Accept: application/json`` gets Zato's
``{"message": "Password updated"}``). An SFTP private key is a write-only textarea on the
change page itself. Each SFTP connection has a command shell (``<pk>/shell/``), the seed's
page for rapid prototyping: SFTP commands, one a line, run on a session of their own; the
output, the errors and the response time come back, and a log level adds the protocol
detail. A failing command is shown, never raised, so the page stays usable. The shell
changes files on the server, so it needs the permission to change the connection; it refuses
``get`` and ``put``, which would read and write files on Switchboard's own machine.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from connections.admin_base import PingAdminMixin, wants_json
from connections.directory_api import build_connection
from connections.directory_models import FtpConnection, LdapConnection, SftpConnection

SHELL_MAX = 100_000
if TYPE_CHECKING:
    from connections.sftp_shell import SftpOutput

logger = logging.getLogger(__name__)


class ChangePasswordForm(forms.Form):
    password1 = forms.CharField(label="New password", strip=False, max_length=4096,
                                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                                help_text="The password Switchboard sends to the server; stored encrypted, never "
                                "shown again. Pools are rebuilt with it within a second.")
    password2 = forms.CharField(label="New password (again)", strip=False, max_length=4096,
                                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") != data.get("password2"):
            raise ValidationError("The two passwords are not the same.")
        return data


class DirectoryAdmin(PingAdminMixin, admin.ModelAdmin):
    """Shared by the three: a Ping button (on a connection built from the row), a password page."""

    change_form_template = "admin/connections/change_form_directory.html"
    readonly_fields = ["password_status"]
    list_per_page = 50
    show_full_result_count = False

    def ping_object(self, obj: Any) -> Any:
        connection = build_connection(obj)
        try:
            return connection.ping()
        finally:
            connection.close()

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        extra = [path("<int:pk>/password/", self.admin_site.admin_view(self.change_password_view),
                      name="{}_{}_password".format(*info))]
        return extra + super().get_urls()

    @admin.display(description="Password")
    def password_status(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "Set it on the “Change password” page once the connection is saved."
        return "Stored encrypted; never shown. Use “Change password” to replace it." if obj.has_password \
            else "None stored. Use “Change password” to set one."

    def change_password_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(self.model, pk=pk)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        form = ChangePasswordForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            obj.set_password(form.cleaned_data["password1"])
            obj.save()
            self.log_change(request, obj, [{"changed": {"fields": ["password"]}}])
            if wants_json(request):
                return JsonResponse({"message": "Password updated"})
            messages.success(request, f"The password of “{obj.name}” was changed.")
            return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                                                args=[obj.pk]))
        if request.method == "POST" and wants_json(request):
            return JsonResponse({"message": " ".join(m for errors in form.errors.values() for m in errors)},
                                status=400)
        context = {**self.admin_site.each_context(request), "title": f"Change password: {obj.name}", "form": form,
                   "original": obj, "opts": self.opts}
        return TemplateResponse(request, "admin/accounts/change_password.html", context)


@admin.register(LdapConnection)
class LdapConnectionAdmin(DirectoryAdmin):
    list_display = ["name", "servers", "auth_type", "username", "tls_mode", "pool_size", "is_active", "updated"]
    list_filter = ["is_active", "auth_type", "tls_mode", "pool_strategy"]
    search_fields = ["name", "servers", "username"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "servers", "pool_strategy"]}),
        ("Bind", {"fields": ["auth_type", "username", "password_status"]}),
        ("TLS", {"fields": ["tls_mode", "tls_ca_cert", "tls_validate"]}),
        ("Timeouts and pool", {"fields": ["connect_timeout", "operation_timeout", "pool_size",
                                          "pool_exhaust_timeout"]}),
    ]


class SftpConnectionForm(forms.ModelForm):
    new_private_key = forms.CharField(
        label="Private key", required=False, strip=True, max_length=65536,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="OpenSSH or PEM private key (no passphrase). Paste one to set it; leave empty to keep the stored "
        "one. It is stored encrypted and never shown again.",
    )
    clear_private_key = forms.BooleanField(label="Remove the stored private key", required=False,
                                           help_text="Tick to delete the stored key; the password is used alone.")

    class Meta:
        model = SftpConnection
        fields = ["name", "is_active", "host", "port", "username", "host_key", "accept_unknown_host_key",
                  "preserve_metadata", "bandwidth_limit", "log_level", "ssh_options", "ping_command",
                  "default_directory", "timeout"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_private_key"].widget.format_value = lambda value: None  # never rendered back

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            if data.get("new_private_key"):
                self.instance.set_private_key(data["new_private_key"])
            elif data.get("clear_private_key"):
                self.instance.set_private_key("")
        except ValidationError as exc:
            self.add_error("new_private_key", exc.message_dict.get("private_key", exc.messages))
        return data


class ShellForm(forms.Form):
    data = forms.CharField(label="Commands", max_length=SHELL_MAX, strip=False, initial="ls .",
                           widget=forms.Textarea(attrs={"rows": 8, "cols": 100, "spellcheck": "false"}),
                           help_text="SFTP commands, one a line (ls, cd, pwd, mkdir, rmdir, rm, rename, ln, chmod, "
                           "chown, chgrp, stat, df, help). A line starting with - goes on when it fails.")
    log_level = forms.TypedChoiceField(label="Log level", coerce=int, initial=0, choices=[
        (0, "0: output only"), (1, "1: connection events"), (2, "2: protocol"), (3, "3: protocol (all)"),
        (4, "4: protocol with packet dumps")])


@admin.register(SftpConnection)
class SftpConnectionAdmin(DirectoryAdmin):
    form = SftpConnectionForm
    list_display = ["name", "host", "port", "username", "accept_unknown_host_key", "is_active", "updated"]
    list_filter = ["is_active", "accept_unknown_host_key", "preserve_metadata"]
    search_fields = ["name", "host", "username"]
    readonly_fields = ["password_status", "private_key_status"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "host", "port", "username", "password_status"]}),
        ("Private key", {"fields": ["private_key_status", "new_private_key", "clear_private_key"]}),
        ("Host key", {"fields": ["host_key", "accept_unknown_host_key"]}),
        ("Transfers", {"fields": ["preserve_metadata", "bandwidth_limit", "default_directory", "timeout"]}),
        ("Diagnostics", {"fields": ["log_level", "ssh_options", "ping_command"]}),
    ]

    @admin.display(description="Stored private key")
    def private_key_status(self, obj: SftpConnection | None) -> str:
        return "Stored encrypted; never shown." if obj is not None and obj.has_private_key else "None stored."

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        extra = [path("<int:pk>/shell/", self.admin_site.admin_view(self.shell_view), name="{}_{}_shell".format(*info))]
        return extra + super().get_urls()

    def shell_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(SftpConnection, pk=pk)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        form = ShellForm(request.POST or None)
        output = None
        if request.method == "POST":
            if not form.is_valid():
                if wants_json(request):
                    return JsonResponse({"msg": "Invalid input", "errors": form.errors}, status=400)
            else:
                output = self.run_shell(request, obj, form.cleaned_data["data"], form.cleaned_data["log_level"])
                if wants_json(request):
                    return JsonResponse({"msg": f"Response time: {output.response_time * 1000:.1f} ms "
                                                f"(#{output.command_no})", **output.as_dict()})
        context = {**self.admin_site.each_context(request), "title": f"SFTP command shell: {obj.name}",
                   "form": form, "original": obj, "opts": self.opts, "output": output,
                   "response_ms": f"{output.response_time * 1000:.1f}" if output else ""}
        return TemplateResponse(request, "admin/connections/sftp_shell.html", context)


    def run_shell(self, request: HttpRequest, obj: SftpConnection, script: str, log_level: int) -> SftpOutput:
        """The script's output; the unforeseen becomes an error line (logged with the CID), never a 500."""
        from connections.sftp_shell import SftpOutput  # paramiko: imported when a shell is first used

        client = build_connection(obj)
        started = time.perf_counter()
        try:
            return client.execute(script, log_level=log_level, raise_on_error=False, allow_local=False)
        except Exception as exc:
            cid = getattr(request, "cid", "")
            logger.exception("[%s] The SFTP shell of `%s` failed", cid, obj.name)
            return SftpOutput(False, script, 0, "", f"unexpected error {type(exc).__name__} (see the server log, "
                              f"CID {cid})\n", "", time.perf_counter() - started)
        finally:
            client.close()


@admin.register(FtpConnection)
class FtpConnectionAdmin(DirectoryAdmin):
    list_display = ["name", "host", "port", "user", "tls", "passive", "is_active", "updated"]
    list_filter = ["is_active", "tls", "passive"]
    search_fields = ["name", "host", "user"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "host", "port", "user", "password_status"]}),
        ("TLS", {"fields": ["tls", "tls_ca_cert"]}),
        ("Sessions", {"fields": ["passive", "timeout", "default_directory", "pool_size"]}),
    ]
