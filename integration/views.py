"""Health and metrics endpoints (reserved paths)."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.api_auth import check_metrics_access
from integration import snapshot
from integration.channels.rest import error_response
from integration.errors import SwitchboardError, error_body
from integration.invoke import invoke, new_cid
from integration.metrics import BOUNDS_MS, recorder


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the configuration snapshot is loaded."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        snap = snapshot.current()
    except Exception as exc:  # report, do not raise: this is what load balancers poll
        return JsonResponse({"status": "error", "details": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "config_version": snap.version, "services": len(snap.registry)})


def metrics(request: HttpRequest) -> HttpResponse:
    """This process's invocation counters and latency histograms in Prometheus text format.

    They name every service, so a scrape needs ``Authorization: Bearer <METRICS_TOKEN>`` or an
    API token (``accounts.api_auth.check_metrics_access``); anything else is 401 in the one error shape.
    """
    try:
        check_metrics_access(request)
    except SwitchboardError as exc:
        return error_response(exc, getattr(request, "cid", None) or new_cid())
    totals = sorted(recorder.totals().items())
    lines = [
        "# TYPE switchboard_invocations_total counter",
        "# TYPE switchboard_invocation_errors_total counter",
        "# TYPE switchboard_invocation_seconds_total counter",
    ]
    for name, tally in totals:
        label = _label(name)
        lines.append(f'switchboard_invocations_total{{service="{label}"}} {tally.count}')
        lines.append(f'switchboard_invocation_errors_total{{service="{label}"}} {tally.errors}')
        lines.append(f'switchboard_invocation_seconds_total{{service="{label}"}} {tally.total_ms / 1000:.6f}')
    lines.append("# TYPE switchboard_invocation_duration_seconds histogram")
    for name, tally in totals:
        label = _label(name)
        cumulative = 0
        for bound, count in zip(BOUNDS_MS, tally.buckets, strict=False):
            cumulative += count
            lines.append(f'switchboard_invocation_duration_seconds_bucket{{service="{label}",le="{bound / 1000:g}"}} '
                         f"{cumulative}")
        lines.append(f'switchboard_invocation_duration_seconds_bucket{{service="{label}",le="+Inf"}} {tally.count}')
        lines.append(f'switchboard_invocation_duration_seconds_sum{{service="{label}"}} {tally.total_ms / 1000:.6f}')
        lines.append(f'switchboard_invocation_duration_seconds_count{{service="{label}"}} {tally.count}')
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@csrf_exempt
def zato_ping(request: HttpRequest) -> JsonResponse:
    """``/zato/ping`` as Zato answers it, for clients and load balancers written for Zato."""
    result = invoke("zato.ping", channel="rest", cid=getattr(request, "cid", None))
    body = {**result.payload, "zato_env": {"result": "ZATO_OK", "cid": result.cid, "details": ""}}
    response = JsonResponse(body)
    response["X-Zato-CID"] = result.cid
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/manage/", "/zato/"))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 on reserved paths: the one error shape for API paths, Django's page for the admin."""
    if not _wants_json(request):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception)  # type: ignore[arg-type]
    cid = getattr(request, "cid", None) or new_cid()
    response = JsonResponse(error_body(cid, "URL not found"), status=404)
    response["X-Zato-CID"] = cid
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """500 on reserved paths: never a traceback; the CID ties the answer to the log."""
    cid = getattr(request, "cid", None) or new_cid()
    if _wants_json(request):
        response: HttpResponse = JsonResponse(error_body(cid, "Internal server error"), status=500)
    else:
        response = HttpResponse(f"Internal server error (CID {cid})", status=500, content_type="text/plain")
    response["X-Zato-CID"] = cid
    return response
