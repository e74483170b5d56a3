"""The admin's Ping buttons for outgoing connections.

``PingAdminMixin`` gives a ModelAdmin a POST-only URL ``<pk>/ping/`` (named
``<app>_<model>_ping``), a Ping button on the change page, a Ping button on each row of the
list and a "Ping selected" action. The outcome is shown as an admin message, or returned
as JSON to a request that asks for it (``Accept: application/json`` or ``?format=json``)::

    {"ok": true, "ms": 3.1, "info": "Vault 1.17.2, initialized, unsealed, active", "name": "vault-prod"}

A ping that fails is still an answered request (200 with ``"ok": false``); only a missing
object (404), a missing permission (403) or a GET (405) are not. Nothing a ping does can
turn into a 500: an unexpected exception is logged with the request's CID and reported
by its type.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from connections.base import PingResult

logger = logging.getLogger(__name__)


def wants_json(request: HttpRequest) -> bool:
    return request.GET.get("format") == "json" or "application/json" in request.headers.get("Accept", "")


class PingAdminMixin(admin.ModelAdmin):
    """Ping buttons and a JSON ping URL for a ModelAdmin whose objects can be pinged (see the module docstring).

    Pinging needs the permission to view the objects: it changes nothing, and operators who
    may only look at connections are the ones who check them. Override ``ping_object`` when
    the model does not implement ``ping()`` itself.
    """

    change_form_template = "admin/connections/change_form_ping.html"
    ping_max_selected = 10  # each ping may wait for its connection's timeout: keep a bulk ping bounded

    # --- What a ping is ---------------------------------------------------------------------------

    def ping_object(self, obj: Any) -> PingResult:
        return obj.ping()

    def run_ping(self, request: HttpRequest, obj: Model) -> PingResult:
        """``ping_object`` that never raises: the unforeseen is logged under the request's CID."""
        started = time.perf_counter()
        try:
            result = self.ping_object(obj)
        except Exception as exc:
            cid = getattr(request, "cid", "")
            logger.exception("[%s] Pinging %s `%s` failed", cid, self.opts.verbose_name, obj)
            # Only the type: exception texts can quote request headers, tokens included.
            result = PingResult(False, (time.perf_counter() - started) * 1000,
                                f"unexpected error {type(exc).__name__} (see the server log, CID {cid})")
        level = logging.INFO if result.ok else logging.WARNING
        logger.log(level, "Ping of %s `%s` by %s: %s in %.1f ms, %s", self.opts.verbose_name, obj,
                   request.user.get_username(), "OK" if result.ok else "failed", result.ms, result.info)
        return result

    def report(self, request: HttpRequest, obj: Model, result: PingResult) -> None:
        self.message_user(request, self.ping_message(obj, result), messages.SUCCESS if result.ok else messages.ERROR)

    def ping_message(self, obj: Model, result: PingResult) -> str:
        what = f"{self.opts.verbose_name} “{obj}”"
        if result.ok:
            return f"Ping OK: {what} answered in {result.ms:.1f} ms. {result.info}"
        return f"Ping failed: {what}: {result.info} (after {result.ms:.1f} ms)"

    # --- URLs and views ---------------------------------------------------------------------------

    def ping_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_ping"

    def get_urls(self) -> list[Any]:
        extra = [path("<path:object_id>/ping/", self.admin_site.admin_view(self.ping_view),
                      name=self.ping_url_name())]
        return extra + super().get_urls()  # before the admin's catch-all <path:object_id>/

    def ping_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        as_json = wants_json(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"], "Ping with a POST request (the Ping button sends one).")
        obj = self.get_object(request, object_id)
        if obj is None:
            info = f"{self.opts.verbose_name} with ID “{object_id[:64]}” does not exist. Perhaps it was deleted?"
            if as_json:
                return JsonResponse({"ok": False, "info": info}, status=404)
            self.message_user(request, info, messages.WARNING)
            return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        if not self.has_view_or_change_permission(request, obj):
            if as_json:
                return JsonResponse({"ok": False, "info": "You may not ping this connection."}, status=403)
            raise PermissionDenied
        result = self.run_ping(request, obj)
        if as_json:
            return JsonResponse({**result.as_json(), "name": str(obj)})
        self.report(request, obj, result)
        return HttpResponseRedirect(self._back(request, obj))

    def _back(self, request: HttpRequest, obj: Model) -> str:
        """Where the button was: ``next``, else the referring admin page, else the object's change page."""
        for candidate in (request.POST.get("next"), request.headers.get("Referer")):
            if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()},
                                                             require_https=request.is_secure()):
                return candidate
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])

    # --- The list: a button per row and a bulk action --------------------------------------------

    def get_list_display(self, request: HttpRequest) -> Any:
        """The Ping column right after the first (the link): wide lists scroll sideways, and it stays in view."""
        columns = list(super().get_list_display(request))
        if "ping_button" not in columns:
            columns.insert(1, "ping_button")
        return columns

    @admin.display(description="ping")
    def ping_button(self, obj: Model) -> str:
        # The list's rows sit inside the changelist form (which carries the CSRF token), and
        # forms cannot nest: the button submits that form to the ping URL instead.
        url = reverse(f"admin:{self.ping_url_name()}", args=[obj.pk])
        return format_html('<button type="submit" class="button sb-ping" formaction="{}" formmethod="post" '
                           'formnovalidate data-ping="{}">Ping</button>', url, obj.pk)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if self.actions is not None and self.has_view_or_change_permission(request):
            action = type(self).ping_selected
            actions["ping_selected"] = (action, "ping_selected", action.short_description)  # type: ignore[attr-defined]
        return actions

    @admin.action(description="Ping selected %(verbose_name_plural)s")
    def ping_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        chosen = list(queryset[: self.ping_max_selected + 1])
        if len(chosen) > self.ping_max_selected:
            self.message_user(request, f"Select at most {self.ping_max_selected} to ping at once: each one may "
                              "wait for its timeout.", messages.ERROR)
            return
        for obj in chosen:
            self.report(request, obj, self.run_ping(request, obj))
