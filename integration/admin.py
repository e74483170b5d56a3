"""Admin for deployed code, services (with an Invoke page), REST and WebSocket channels, connected clients."""

from __future__ import annotations

import json
import time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integration import jsonio
from integration.admin_base import ListingMixin, count_of, search_terms
from integration.channels import security
from integration.errors import SwitchboardError, error_body
from integration.invoke import invoke, new_cid
from integration.jsonio import json_default
from integration.models import (
    AMQPChannel,
    DeployedService,
    FileChannel,
    FileClaim,
    RestChannel,
    ServiceModule,
    WebSocketChannel,
    WebSocketClient,
)
from integration.services import ChannelInfo


class RejectedFilter(admin.SimpleListFilter):
    """Modules whose latest upload was rejected (they keep running their last good source)."""

    title = "latest upload"
    parameter_name = "upload"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("rejected", "rejected"), ("deployed", "deployed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ServiceModule]) -> QuerySet[ServiceModule]:
        if self.value() == "rejected":
            return queryset.exclude(last_error="")
        if self.value() == "deployed":
            return queryset.filter(last_error="")
        return queryset


@admin.register(ServiceModule)
class ServiceModuleAdmin(ListingMixin):
    list_display = ["name", "origin", "deployed_at", "status", "filename"]
    list_filter = ["origin", RejectedFilter]
    search_fields = ["name", "filename"]
    readonly_fields = ["name", "filename", "origin", "source_hash", "deployed_at", "last_error", "last_error_at",
                       "source"]
    exclude = ["rejected_hash"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceModule]:
        # Up to 250 rows a page: their source stays in the table until a change page needs it.
        return super().get_queryset(request).defer("source")

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
            return jsonio.loads(text)
        except jsonio.InvalidJSON as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.reason}") from None


@admin.register(DeployedService)
class DeployedServiceAdmin(ListingMixin):
    list_display = ["name", "module", "class_name", "channel_count", "deployed_at", "invoke_link"]
    list_filter = ["module__origin"]
    search_fields = ["name", "module__name", "class_name"]
    list_select_related = ["module"]
    readonly_fields = ["name", "module", "class_name", "deployed_at", "source"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeployedService]:
        # The module's source can be long and a page lists up to 250 services: leave it in the table.
        queryset = super().get_queryset(request).select_related("module").defer("module__source")
        return queryset.annotate(channel_count=count_of(RestChannel, "service"))

    @admin.display(description="REST channels", ordering="channel_count")
    def channel_count(self, obj: DeployedService) -> int:
        return obj.channel_count  # type: ignore[attr-defined]

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
            try:
                shown = json.dumps(body, indent=2, default=json_default)
            except (RecursionError, ValueError, TypeError) as exc:  # nested too deep, a huge int: the service's data
                shown = f"<the response cannot be shown as JSON: {type(exc).__name__}: {str(exc)[:200]}>"
        else:
            shown = str(body)
        return {"status": status, "body": shown, "cid": cid, "ms": (time.perf_counter() - started) * 1000}


class SecurityTypeFilter(admin.SimpleListFilter):
    """Channels by the type of their security definition, or with none.

    By type rather than by definition: the choices stay a handful however many
    definitions there are (a definition is found with the search box).
    """

    title = "security"
    parameter_name = "security_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("none", "None (open to anyone)"), *security.choices()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[RestChannel]) -> QuerySet[RestChannel]:
        value = self.value()
        if value == "none":
            return queryset.filter(security__isnull=True)
        if value in dict(security.choices()):
            return queryset.filter(security__sec_type=value)
        return queryset


def _definitions() -> QuerySet[Any]:
    """Every security definition (the model the channels' ``security`` points at; no import of ``accounts``)."""
    return RestChannel._meta.get_field("security").related_model.objects.all()


@admin.register(RestChannel)
class RestChannelAdmin(ListingMixin):
    # The data format is a filter and on the change page; the rest fits a laptop screen beside the filters.
    list_display = ["name", "is_active", "method_display", "url_path", "service", "security_display",
                    "accept_display"]
    list_filter = ["is_active", "method", SecurityTypeFilter, "data_format"]
    search_fields = ["name", "url_path", "service__name", "security__name"]  # see get_search_results
    search_help_text = "Matches the channel's name, URL path, service or security definition."
    list_select_related = ["service", "security"]
    autocomplete_fields = ["service"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "service", "security"]}),
        ("Matching", {"fields": ["url_path", "method", "accept"]}),
        ("Data", {"fields": ["data_format", "merge_url_params"]}),
    ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[RestChannel], search_term: str
    ) -> tuple[QuerySet[RestChannel], bool]:
        """Django's search over ``search_fields``, with the services and definitions matched apart.

        Each word (or "quoted phrase") must match the channel's name or path, or the name of its
        service or security definition, as with Django's own search. The services and
        definitions that match are found first, in their small tables, so that each channel row
        costs two text comparisons and two hash probes instead of four comparisons over a join
        (EXPLAIN ANALYZE over 10,000 channels: 9.5 ms instead of 13 ms per query).
        """
        for term in search_terms(search_term):
            services = DeployedService.objects.filter(name__icontains=term).values("pk")
            definitions = _definitions().filter(name__icontains=term).values("pk")
            queryset = queryset.filter(
                Q(name__icontains=term) | Q(url_path__icontains=term) | Q(service__in=services)
                | Q(security__in=definitions)
            )
        return queryset, False

    @admin.display(description="method", ordering="method")
    def method_display(self, obj: RestChannel) -> str:
        return obj.method or "any"

    @admin.display(description="accept", ordering="accept")
    def accept_display(self, obj: RestChannel) -> str:
        return obj.accept or "any"

    @admin.display(description="security", ordering="security__name")
    def security_display(self, obj: RestChannel) -> str:
        if obj.security is None:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.security.get_sec_type_display(), obj.security.name)


def live_client_count() -> Coalesce:
    """An annotation: the channel's connected clients (live rows only), one index lookup per listed channel."""
    rows = (
        WebSocketClient.objects.live().filter(channel=OuterRef("pk")).order_by().values("channel")
        .annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


@admin.register(WebSocketChannel)
class WebSocketChannelAdmin(ListingMixin):
    list_display = ["name", "is_active", "path", "service", "security_display", "client_count"]
    list_filter = ["is_active", SecurityTypeFilter]
    search_fields = ["name", "path", "service__name", "security__name"]  # see get_search_results
    search_help_text = "Matches the channel's name, path, service or security definition."
    list_select_related = ["service", "security"]
    autocomplete_fields = ["service"]
    readonly_fields = ["connected_clients", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "path", "service", "security", "connected_clients"]}),
        ("Requests", {"fields": ["allowed_services"]}),
        ("Limits", {"fields": ["new_token_wait_time", "token_ttl", "idle_timeout", "max_message_size",
                               "max_messages_per_second"]}),
        ("Documentation", {"fields": ["pushes", "created", "updated"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebSocketChannel]:
        return super().get_queryset(request).annotate(client_count=live_client_count())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebSocketChannel], search_term: str
    ) -> tuple[QuerySet[WebSocketChannel], bool]:
        """As for REST channels: services and definitions are matched in their own small tables first."""
        for term in search_terms(search_term):
            services = DeployedService.objects.filter(name__icontains=term).values("pk")
            definitions = _definitions().filter(name__icontains=term).values("pk")
            queryset = queryset.filter(
                Q(name__icontains=term) | Q(path__icontains=term) | Q(service__in=services)
                | Q(security__in=definitions)
            )
        return queryset, False

    @admin.display(description="security", ordering="security__name")
    def security_display(self, obj: WebSocketChannel) -> str:
        if obj.security is None:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.security.get_sec_type_display(), obj.security.name)

    @admin.display(description="connected clients", ordering="client_count")
    def client_count(self, obj: WebSocketChannel) -> str:
        count = obj.client_count  # type: ignore[attr-defined]
        if not count:
            return "0"
        return format_html('<a href="{}">{}</a>', clients_url(obj.pk), count)

    @admin.display(description="connected clients")
    def connected_clients(self, obj: WebSocketChannel) -> str:
        if obj.pk is None:
            return "-"
        count = WebSocketClient.objects.live().filter(channel=obj).count()
        return format_html('<a href="{}">{} connected now</a>', clients_url(obj.pk), count)


def clients_url(channel_id: int) -> str:
    return reverse("admin:integration_websocketclient_changelist") + f"?channel__id__exact={channel_id}"


class ClientChannelFilter(admin.SimpleListFilter):
    """Clients by channel, offering only the channels that have clients now (a handful, however many exist)."""

    title = "channel"
    parameter_name = "channel__id__exact"
    max_choices = 100

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        channels = WebSocketChannel.objects.filter(
            pk__in=WebSocketClient.objects.live().order_by().values("channel").distinct()
        ).order_by("name").values_list("pk", "name")[: self.max_choices]
        return [(str(pk), name) for pk, name in channels]

    def queryset(self, request: HttpRequest, queryset: QuerySet[WebSocketClient]) -> QuerySet[WebSocketClient]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(channel_id=int(value))
        return queryset


@admin.register(WebSocketClient)
class WebSocketClientAdmin(ListingMixin):
    """The clients connected now, on every server; rows of servers that died are left out (``live()``)."""

    list_display = ["channel", "username_display", "since", "messages_in", "messages_out", "last_seen", "server",
                    "address", "client_id"]
    list_display_links = None  # nothing to edit: a row is what a server reports
    list_filter = [ClientChannelFilter]
    search_fields = ["username", "client_id", "remote_addr", "channel__name", "server_host"]
    search_help_text = "Matches the username, client id, address, channel name or server host."
    list_select_related = ["channel"]
    actions = ["disconnect"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebSocketClient]:
        return super().get_queryset(request).live()

    @admin.display(description="user", ordering="username")
    def username_display(self, obj: WebSocketClient) -> str:
        return obj.username or "-"

    @admin.display(description="since", ordering="connected_at")
    def since(self, obj: WebSocketClient) -> Any:
        return obj.connected_at

    @admin.display(description="address", ordering="remote_addr")
    def address(self, obj: WebSocketClient) -> str:
        return obj.remote_addr or "-"

    @admin.display(description="server", ordering="server_host")
    def server(self, obj: WebSocketClient) -> str:
        return f"{obj.server_host} (pid {obj.server_pid})"

    @admin.action(description="Disconnect the selected clients", permissions=["disconnect"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[WebSocketClient]) -> None:
        """Ask each selected connection to close (4005). The first ``PushFailed`` stops the action:
        every further client would wait ``PUSH_TIMEOUT`` too, holding the page for minutes."""
        from integration.push import PushFailed, disconnect

        client_ids = list(queryset.values_list("client_id", flat=True))
        done = 0
        for client_id in client_ids:
            try:
                disconnect(client_id)
            except PushFailed as exc:  # the channel layer is down: say so, never a traceback page
                self.message_user(request, f"Could not reach the channel layer for {len(client_ids) - done} of "
                                  f"{len(client_ids)} clients: {exc.details}", messages.ERROR)
                break
            done += 1
        if done:
            self.message_user(request, f"Asked {done} client{'s' if done != 1 else ''} to disconnect (code 4005); "
                              "they leave this list within a second or two.", messages.SUCCESS)

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        # Whoever may change WebSocket channels may cut their connections.
        return request.user.has_perm("integration.change_websocketchannel")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows are written by the servers holding the connections

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting a row would not close the connection: use Disconnect


@admin.register(FileChannel)
class FileChannelAdmin(ListingMixin):
    list_display = ["name", "is_active", "directory", "patterns", "recursive", "service", "after_success",
                    "after_failure"]
    list_filter = ["is_active", "recursive", "after_success", "after_failure", "use_polling"]
    search_fields = ["name", "directory", "patterns", "service__name"]
    list_select_related = ["service"]
    autocomplete_fields = ["service"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "service"]}),
        ("Watching", {"fields": ["directory", "patterns", "recursive", "on_created", "on_modified", "on_moved",
                                 "stable_seconds", "use_polling"]}),
        ("What the service receives", {"fields": ["pass_event", "pass_contents", "max_contents_size"]}),
        ("Afterwards", {"fields": ["after_success", "done_directory", "after_failure", "error_directory"]}),
    ]


@admin.register(FileClaim)
class FileClaimAdmin(ListingMixin):
    """What became of each file: read-only, written by the watchers."""

    list_display = ["path", "channel", "event", "status", "cid", "owner", "claimed_at", "finished_at"]
    list_filter = ["status", "event", "channel"]
    search_fields = ["path", "cid"]
    list_select_related = ["channel"]
    readonly_fields = [f.name for f in FileClaim._meta.fields if not f.primary_key]  # the row id says nothing

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AMQPChannel)
class AMQPChannelAdmin(ListingMixin):
    list_display = ["name", "is_active", "broker", "queue", "service", "data_format", "prefetch", "max_requeues"]
    list_filter = ["is_active", "data_format", "broker"]
    search_fields = ["name", "queue", "service__name"]
    list_select_related = ["service", "broker"]
    autocomplete_fields = ["service"]
