"""The admin's **API tokens** page: management API tokens made behind the TOTP login, shown once.

Every staff user may make tokens for themselves (a token never has more rights than its user)
and sees only their own; superusers see every token and may make one for another staff user.
A token cannot be edited: it is revoked (the list's action, or ``manage.py api_token revoke``)
and a new one made. Revoked tokens stay listed, for the record; superusers may delete them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import API_TOKEN_DEFAULT_DAYS, API_TOKEN_MAX_DAYS, ApiToken


class ApiTokenAddForm(forms.ModelForm):
    expires_in = forms.IntegerField(
        label="Expires in (days)", min_value=0, max_value=API_TOKEN_MAX_DAYS, initial=API_TOKEN_DEFAULT_DAYS,
        help_text="Days until the token stops working; 0: never (revoke it when it is no longer needed).",
    )

    class Meta:
        model = ApiToken
        fields = ["name", "user", "read_only"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "read_only", "created", "expires", "last_used", "state")
    list_filter = ("read_only",)
    search_fields = ("prefix", "name", "user__username")
    list_select_related = ("user",)
    actions = ["revoke_tokens"]
    readonly_fields = ("prefix", "name", "user", "read_only", "created", "expires", "last_used", "revoked",
                       "how_to_use")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    # Tokens are personal: any staff user manages their own, whatever the model permissions say.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return obj is None or user.is_superuser or obj.user_id == user.pk

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoked and replaced, never edited

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return bool(request.user.is_superuser)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is not None:
            return list(self.readonly_fields)
        return ["name", "user", "read_only", "expires_in"] if request.user.is_superuser else [
            "name", "read_only", "expires_in"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return self.readonly_fields if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False,
                 **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "user" in form.base_fields:
            field = form.base_fields["user"]
            field.queryset = get_user_model()._default_manager.filter(is_active=True, is_staff=True)
            field.initial = request.user.pk
            field.help_text = "The token acts as this staff user, with this user's permissions."
        return form

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        if not request.user.is_superuser or obj.user_id is None:
            obj.user = request.user
        days = form.cleaned_data.get("expires_in") or 0
        obj.expires = timezone.now() + timedelta(days=days) if days else None
        obj._shown_token = obj.new_token()  # type: ignore[attr-defined]
        obj.save()

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"API token {obj.prefix}...",
            "original": obj,
            "token": obj._shown_token,  # type: ignore[attr-defined]
            "opts": ApiToken._meta,
        }
        response = TemplateResponse(request, "admin/accounts/apitoken/token_created.html", context)
        response["Cache-Control"] = "no-store"  # the page shows the token
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = [token.prefix for token in queryset if token.revoke()]
        if revoked:
            messages.success(request, f"Revoked: {', '.join(revoked)}. They stop working at once.")
        else:
            messages.warning(request, "Nothing to revoke: the selected tokens were already revoked.")

    @admin.display(description="Status")
    def state(self, obj: ApiToken) -> str:
        return obj.status

    @admin.display(description="Use")
    def how_to_use(self, obj: ApiToken) -> str:
        return format_html(
            "Scripts send <code>Authorization: Token &lt;token&gt;</code> (or <code>Bearer</code>). The token was "
            "shown once, when made; to stop it, select it in the list and choose <em>Revoke the selected "
            "tokens</em>, or run <code>python manage.py api_token revoke {}</code>.", obj.prefix,
        )
