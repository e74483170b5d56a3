"""Admin for security definitions. Passwords are set here and never shown back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from accounts.models import BasicAuth


class BasicAuthForm(forms.ModelForm):
    new_password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(render_value=False),
        help_text="Type a new password to set it; leave empty to keep the current one. "
        "A new definition without one gets a random password nobody knows.",
    )

    class Meta:
        model = BasicAuth
        fields = ["name", "is_active", "username", "realm"]


@admin.register(BasicAuth)
class BasicAuthAdmin(admin.ModelAdmin):
    form = BasicAuthForm
    list_display = ["name", "username", "realm", "is_active", "updated"]
    list_filter = ["is_active"]
    search_fields = ["name", "username"]
    list_per_page = 50
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: BasicAuth, form: Any, change: bool) -> None:
        if form.cleaned_data.get("new_password"):
            obj.set_password(form.cleaned_data["new_password"])
        super().save_model(request, obj, form, change)
