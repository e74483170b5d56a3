"""Admin for security definitions. Secrets are set here and never shown back.

Types with a password get a "Change password" page (the same password twice, as in
Zato); a new definition without one has a random password nobody knows. An API key is
shown once, on the page that follows its creation or regeneration, and never again.
Deleting a definition lists, on Django's confirmation page, the channels that go with it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.models import ApiKey, BasicAuth, JWTDefinition, OAuthDefinition, TechAccount
from integration.admin_base import ListingMixin, count_of
from integration.models import RestChannel


class ChangePasswordForm(forms.Form):
    password1 = forms.CharField(label="New password", strip=False, max_length=1024,
                                widget=forms.PasswordInput(render_value=False),
                                help_text="Replaces the current password at once; callers still sending the old "
                                "one are refused from then on. Only a keyed hash of it is stored.")
    password2 = forms.CharField(label="New password (again)", strip=False, max_length=1024,
                                widget=forms.PasswordInput(render_value=False),
                                help_text="The same password again, to catch a typing mistake.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") != data.get("password2"):
            raise ValidationError("The two passwords are not the same.")
        return data


def _initial_password_field() -> forms.CharField:
    return forms.CharField(
        label="Password", required=False, strip=False, max_length=1024,
        widget=forms.PasswordInput(render_value=False),
        help_text="Optional. Without one the definition gets a random password nobody knows, "
        "and stays unusable until you change it.",
    )


class DefinitionAdmin(ListingMixin):
    """What every security definition's listing shows: how many REST channels use it."""

    list_filter = ["is_active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(channel_count=count_of(RestChannel, "security"))

    @admin.display(description="REST channels", ordering="channel_count")
    def channel_count(self, obj: Any) -> int:
        return obj.channel_count


class ChangeSecretMixin(DefinitionAdmin):
    """A "Change password" page (``<pk>/password/``): the new secret typed twice, never shown back."""

    change_password_template = "admin/accounts/change_password.html"  # noqa: S105 (a template path)
    change_password_form: type[forms.Form] = ChangePasswordForm
    secret_label = "password"  # noqa: S105 (a word for messages)

    def get_urls(self) -> list[Any]:
        info = self.model._meta.app_label, self.model._meta.model_name
        extra = [path("<int:pk>/password/", self.admin_site.admin_view(self.change_password_view),
                      name="{}_{}_password".format(*info))]
        return extra + super().get_urls()

    def change_password_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(self.model, pk=pk)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        form = self.change_password_form(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                self.apply_password(obj, form.cleaned_data["password1"])
            except ValidationError as exc:
                form.add_error(None, exc.messages)
        if request.method == "POST" and form.is_valid():
            obj.save()
            self.log_change(request, obj, [{"changed": {"fields": ["password"]}}])
            messages.success(request, f"The {self.secret_label} of “{obj.name}” was changed.")
            return HttpResponseRedirect(reverse(
                f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change {self.secret_label}: {obj.name}",
            "form": form,
            "original": obj,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, self.change_password_template, context)

    def apply_password(self, obj: Any, password: str) -> None:
        obj.set_password(password)


class PasswordDefinitionAdmin(ChangeSecretMixin):
    """Shared by the types with a verify-only password: set on add, changed on its own page."""

    readonly_fields = ["password_status"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:  # the add form takes an optional first password
            kwargs["form"] = type("AddDefinitionForm", (self.form,), {"initial_password": _initial_password_field()})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f for f in super().get_fields(request, obj) if f not in ("password_status", "initial_password")]
        return [*fields, "password_status"] if obj is not None else [*fields, "initial_password"]

    @admin.display(description="Password")
    def password_status(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_password", args=[obj.pk])
        return format_html('Stored as a keyed hash, never shown. <a href="{}" id="change-password">'
                           "Change password</a>", url)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and form.cleaned_data.get("initial_password"):
            obj.set_password(form.cleaned_data["initial_password"])
        super().save_model(request, obj, form, change)


@admin.register(BasicAuth)
class BasicAuthAdmin(PasswordDefinitionAdmin):
    fields = ["name", "is_active", "username", "realm"]
    list_display = ["name", "username", "realm", "is_active", "channel_count", "updated"]
    search_fields = ["name", "username", "realm"]


@admin.register(TechAccount)
class TechAccountAdmin(PasswordDefinitionAdmin):
    fields = ["name", "is_active"]
    list_display = ["name", "is_active", "channel_count", "updated"]
    search_fields = ["name"]


@admin.register(JWTDefinition)
class JWTDefinitionAdmin(PasswordDefinitionAdmin):
    fields = ["name", "is_active", "username", "ttl"]
    list_display = ["name", "username", "ttl", "is_active", "channel_count", "updated"]
    search_fields = ["name", "username"]


@admin.register(ApiKey)
class ApiKeyAdmin(ChangeSecretMixin):
    fields = ["name", "is_active", "header", "key_prefix"]
    readonly_fields = ["key_prefix"]
    list_display = ["name", "header", "key_prefix", "is_active", "channel_count", "updated"]
    search_fields = ["name", "key_prefix", "header"]
    change_form_template = "admin/accounts/apikey/change_form.html"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            obj._shown_key = obj.new_key()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        return self._show_key(request, obj, obj._shown_key)  # type: ignore[attr-defined]

    def get_urls(self) -> list[Any]:
        extra = [path("<int:pk>/regenerate-key/", self.admin_site.admin_view(self.regenerate_view),
                      name="accounts_apikey_regenerate")]
        return extra + super().get_urls()

    def apply_password(self, obj: Any, password: str) -> None:
        obj.set_key(password)  # a given key (e.g. one brought from Zato), at least 24 characters

    def regenerate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(ApiKey, pk=pk)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:accounts_apikey_change", args=[pk]))
        key = obj.new_key()
        obj.save()
        self.log_change(request, obj, [{"changed": {"fields": ["key"]}}])
        return self._show_key(request, obj, key)

    def _show_key(self, request: HttpRequest, obj: ApiKey, key: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key for {obj.name}",
            "original": obj,
            "key": key,
            "opts": ApiKey._meta,
        }
        response = TemplateResponse(request, "admin/accounts/apikey/key_created.html", context)
        response["Cache-Control"] = "no-store"
        return response


class ChangeClientSecretForm(ChangePasswordForm):
    password1 = forms.CharField(label="New client secret", strip=False, max_length=4096,
                                widget=forms.PasswordInput(render_value=False),
                                help_text="Sent to the token server from now on; tokens got with the old one are "
                                "no longer used. Stored encrypted, never shown again.")
    password2 = forms.CharField(label="New client secret (again)", strip=False, max_length=4096,
                                widget=forms.PasswordInput(render_value=False),
                                help_text="The same secret again, to catch a typing mistake.")


class OAuthDefinitionForm(forms.ModelForm):
    client_secret = forms.CharField(
        label="Client secret", required=False, strip=False, max_length=4096,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again; change it later with Change secret.",
    )

    class Meta:
        model = OAuthDefinition
        fields = ["name", "is_active", "token_url", "client_id", "scopes", "extra_params", "credentials_in",
                  "timeout", "tls_verify", "tls_ca_cert"]


@admin.register(OAuthDefinition)
class OAuthDefinitionAdmin(ChangeSecretMixin):
    """OAuth client credentials for outgoing connections: no channel can use them, so no channel count."""

    form = OAuthDefinitionForm
    change_password_form = ChangeClientSecretForm
    secret_label = "client secret"  # noqa: S105 (a word for messages)
    list_display = ["name", "client_id", "token_url", "credentials_in", "is_active", "updated"]
    list_filter = ["is_active", "credentials_in"]
    search_fields = ["name", "client_id", "token_url"]
    readonly_fields = ["secret_status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super(DefinitionAdmin, self).get_queryset(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f for f in super().get_fields(request, obj) if f not in ("secret_status", "client_secret")]
        return [*fields, "secret_status"] if obj is not None else [*fields, "client_secret"]

    @admin.display(description="Client secret")
    def secret_status(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        url = reverse("admin:accounts_oauthdefinition_password", args=[obj.pk])
        state = "Stored encrypted, never shown." if obj.has_secret else "None stored yet."
        return format_html('{} <a href="{}" id="change-password">Change secret</a>', state, url)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and form.cleaned_data.get("client_secret"):
            obj.set_secret(form.cleaned_data["client_secret"])
        super().save_model(request, obj, form, change)


from accounts import admin_tokens, admin_totp  # noqa: E402,F401 - API tokens, login audit and TOTP admin
