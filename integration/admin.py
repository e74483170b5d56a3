"""Admin for deployed code, services (with an Invoke page) and REST channels."""

from __future__ import annotations

import json
import time
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integration.channels.rest import json_default
from integration.errors import SwitchboardError, error_body
from integration.invoke import invoke, new_cid
from integration.models import DeployedService, RestChannel, ServiceModule
from integration.services import ChannelInfo


@admin.register(ServiceModule)
class ServiceModuleAdmin(admin.ModelAdmin):
    list_display = ["name", "origin", "deployed_at", "status", "filename"]
    list_filter = ["origin"]
    search_fields = ["name", "filename"]
    readonly_fields = ["name", "filename", "origin", "source_hash", "deployed_at", "last_error", "last_error_at",
                       "source"]
    exclude = ["rejected_hash"]
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description="status")
    def status(self, obj: ServiceModule) -> str:
        if obj.last_error:
            return format_html('<span style="color:#ba2121">rejected: {}</span>', obj.last_error[:200])
        return "deployed"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # modules arrive through the pickup directory, the API or `manage.py deploy`


class InvokeForm(forms.Form):
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "style": "font-family: monospace"}),
        required=False,
        max_length=1_000_000,
        help_text="JSON sent to the service as its request payload (leave empty for none).",
    )

    def clean_payload(self) -> Any:
        text = self.cleaned_data["payload"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


@admin.register(DeployedService)
class DeployedServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "module", "class_name", "deployed_at", "invoke_link"]
    list_filter = ["module__origin"]
    search_fields = ["name", "module__name", "class_name"]
    list_select_related = ["module"]
    readonly_fields = ["name", "module", "class_name", "deployed_at", "source"]
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description="source")
    def source(self, obj: DeployedService) -> str:
        return format_html("<pre style='max-height:40em;overflow:auto'>{}</pre>", obj.module.source)

    @admin.display(description="")
    def invoke_link(self, obj: DeployedService) -> str:
        return format_html('<a href="{}">Invoke</a>', reverse("admin:integration_deployedservice_invoke",
                                                             args=[obj.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        extra = [path("<int:pk>/invoke/", self.admin_site.admin_view(self.invoke_view),
                      name="integration_deployedservice_invoke")]
        return extra + super().get_urls()

    def invoke_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("integration.invoke_service"):
            raise PermissionDenied
        service = get_object_or_404(DeployedService, pk=pk)
        form = InvokeForm(request.POST or None)
        outcome: dict[str, Any] | None = None
        if request.method == "POST" and form.is_valid():
            outcome = self._invoke(request, service.name, form.cleaned_data["payload"])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Invoke {service.name}",
            "service": service,
            "form": form,
            "outcome": outcome,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/integration/invoke.html", context)

    @staticmethod
    def _invoke(request: HttpRequest, name: str, payload: Any) -> dict[str, Any]:
        cid = new_cid()
        started = time.perf_counter()
        channel = ChannelInfo(type="invoke", name="admin", username=request.user.get_username())
        try:
            result = invoke(name, payload, channel=channel, cid=cid)
            status, body = result.status_code, result.payload
        except SwitchboardError as exc:
            status, body = exc.status_code, error_body(cid, exc.details)
        if isinstance(body, bytes):
            shown = f"<{len(body)} bytes>"
        elif isinstance(body, (dict, list)):
            shown = json.dumps(body, indent=2, default=json_default)
        else:
            shown = str(body)
        return {"status": status, "body": shown, "cid": cid, "ms": (time.perf_counter() - started) * 1000}


@admin.register(RestChannel)
class RestChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "method_display", "url_path", "accept_display", "service", "security", "data_format",
                    "is_active"]
    list_filter = ["is_active", "method", "data_format", "security"]
    search_fields = ["name", "url_path", "service__name"]
    list_select_related = ["service", "security"]
    autocomplete_fields = ["service"]
    list_per_page = 50
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["name", "is_active", "service", "security"]}),
        ("Matching", {"fields": ["url_path", "method", "accept"]}),
        ("Data", {"fields": ["data_format", "merge_url_params"]}),
    ]

    @admin.display(description="method", ordering="method")
    def method_display(self, obj: RestChannel) -> str:
        return obj.method or "any"

    @admin.display(description="accept", ordering="accept")
    def accept_display(self, obj: RestChannel) -> str:
        return obj.accept or "any"
