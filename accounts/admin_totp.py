"""Two-factor pages of the admin: a user's own TOTP key, the login audit list, TOTP devices.

The audit list (**Login attempts**) holds admin logins, management API logins with a password,
and the failed credential checks of channels, JWT log-ins, API tokens and ``/metrics``
(``accounts.limits``), each with its kind and the definition it was for.

Enrolment keeps the new key in an unconfirmed ``TOTPDevice`` (encrypted like any key) until
the user types a first valid code from it; only then does it replace the old key, so a
mistyped or unscanned key never locks anyone out.
"""

from __future__ import annotations

from typing import Any

import django_otp
from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts import enrolment, totp
from accounts.models import LoginAttempt, TOTPDevice


class ConfirmCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from the new key", max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8,
                                      "autofocus": True}),
        help_text="The 6-digit code your app shows for the new key.",
    )

    def clean_code(self) -> str:
        code = totp.normalise_code(self.cleaned_data["code"])
        if code is None:
            raise forms.ValidationError("Enter the 6 digits your app shows (digits only).", code="malformed_code")
        return code


def totp_enrol_view(request: HttpRequest) -> HttpResponse:
    """The logged-in user's "Two-factor authentication" page (wrapped by ``admin_view``)."""
    user = request.user
    form = ConfirmCodeForm()
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "generate":
            enrolment.start_enrolment(user)
            return _back(request)
        if action == "cancel":
            enrolment.cancel_enrolment(user)
            messages.info(request, "The new key was discarded; your current key still works.")
            return _back(request)
        if action == "confirm":
            form = ConfirmCodeForm(request.POST)
            if form.is_valid() and _confirm(request, form):
                return _back(request)
    return _render(request, form)


def _confirm(request: HttpRequest, form: ConfirmCodeForm) -> bool:
    """True when the page should be shown afresh (redirect); False to show the form's errors."""
    verdict, device = enrolment.confirm_enrolment(request.user, form.cleaned_data["code"])
    if device is None:
        messages.error(request, "There is no new key waiting for a code; generate one first.")
        return True
    if verdict is not totp.Verdict.ACCEPTED:
        form.add_error("code", "That code is not the one the new key shows now (or it was already used). "
                               "Your current key still works.")
        return False
    # The old device is gone: point this session at the new one so it stays verified.
    django_otp.login(request, device)
    messages.success(request, "The new key is now the one that works for logging in; the old key no longer does.")
    return True


def _back(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:totp-enrol"))


def _render(request: HttpRequest, form: ConfirmCodeForm) -> TemplateResponse:
    user = request.user
    pending = enrolment.pending_device(user)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Two-factor authentication",
        "current": enrolment.confirmed_device(user),
        "pending": pending,
        "form": form,
    }
    if pending is not None:
        key = pending.key
        uri = totp.provisioning_uri(key, user.get_username())
        context.update(
            key_base32=totp.key_to_base32(key),
            key_groups=_groups(totp.key_to_base32(key)),
            uri=uri,
            qr_svg=totp.qr_svg(uri),
            issuer=totp.DEFAULT_ISSUER,
        )
    response = TemplateResponse(request, "admin/accounts/totp/enrol.html", context)
    response["Cache-Control"] = "no-store"  # the page may show a key
    return response


def _groups(text: str, size: int = 4) -> str:
    """Key text in groups of four, easier to type into an app by hand."""
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


@admin.register(LoginAttempt)
class LoginAttemptAdmin(admin.ModelAdmin):
    """The audit list: read-only; superusers may delete old rows."""

    list_display = ("when", "kind", "definition", "username", "address", "stage", "outcome", "reason")
    list_filter = ("kind", "outcome", "stage")
    search_fields = ("username", "address", "definition")
    date_hierarchy = "when"
    fields = ("when", "kind", "definition", "username", "user", "address", "user_agent", "stage", "outcome",
              "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(admin.ModelAdmin):
    """Who has a TOTP key; never the key. New keys come from the user's page or ``reset_totp_key``."""

    list_display = ("user", "name", "confirmed", "created", "last_used")
    list_filter = ("confirmed",)
    search_fields = ("user__username", "name")
    list_select_related = ("user",)
    fields = ("user", "name", "confirmed", "created", "last_used", "how_to_reset")
    readonly_fields = ("user", "confirmed", "created", "last_used", "how_to_reset")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Last code accepted")
    def last_used(self, device: TOTPDevice) -> Any:
        return device.last_used or "never"

    @admin.display(description="New key")
    def how_to_reset(self, device: TOTPDevice) -> str:
        return format_html(
            "The user makes one on their Two-factor authentication page, or an administrator runs "
            "<code>python manage.py reset_totp_key {}</code>.", device.user.get_username(),
        )
