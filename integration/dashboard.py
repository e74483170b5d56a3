"""The admin dashboard: invocations per service, error rates and latency percentiles over time.

The data is what every process records (``integration.metrics``): one ``InvocationStat``
row per minute and service. A range (last hour per minute, last 24 hours per 15 minutes,
last 7 days per hour) is read with three aggregate queries whatever the number of services
or rows: totals per service (the table, and which services the chart names), totals per
time bin (error rate and percentiles over time) and counts per bin for the named services.
Percentiles come from the summed latency histograms. Charts are inline SVG (``charts``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, ExpressionWrapper, F, Max, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from integration import charts, metrics
from integration.charts import Series
from integration.metrics import BUCKET_FIELDS, Tally
from integration.models import InvocationStat

logger = logging.getLogger(__name__)

TOP_SERVICES = 8  # lines in the invocations chart; the rest are summed as "other services"
MAX_TABLE_ROWS = 500
PERMISSION = "integration.view_deployedservice"


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    per: str
    bin_minutes: int
    bins: int
    tick_every: int  # bins between x-axis labels
    tick_format: str


RANGES = {
    "1h": Range("1h", "Last hour", "per minute", 1, 60, 10, "%H:%M"),
    "24h": Range("24h", "Last 24 hours", "per 15 minutes", 15, 96, 16, "%H:%M"),
    "7d": Range("7d", "Last 7 days", "per hour", 60, 168, 24, "%a %d"),
}
DEFAULT_RANGE = "1h"


@dataclass
class ServiceRow:
    """One line of the per-service table."""

    name: str
    count: int
    errors: int
    error_pct: float
    p50: float | None
    p95: float | None
    p99: float | None
    max_ms: float
    mean_ms: float

    @property
    def shown(self) -> dict[str, str]:
        """The times formatted for the page."""
        return {name: format_ms(getattr(self, name)) for name in ("p50", "p95", "p99", "max_ms", "mean_ms")}

    @property
    def error_pct_text(self) -> str:
        return f"{self.error_pct:.1f}" if self.error_pct < 10 else f"{self.error_pct:.0f}"


@dataclass
class Window:
    """The bins of a range, ending with the one holding the current minute."""

    range: Range
    first_bin: int  # bin numbers are slot // bin_minutes
    starts: list[datetime]

    @property
    def first_slot(self) -> int:
        return self.first_bin * self.range.bin_minutes

    @property
    def end_slot(self) -> int:  # exclusive
        return (self.first_bin + self.range.bins) * self.range.bin_minutes


def window_for(chosen: Range, now: datetime) -> Window:
    last_bin = metrics.minute_of(now.timestamp()) // chosen.bin_minutes
    first_bin = last_bin - chosen.bins + 1
    starts = [metrics.slot_start((first_bin + i) * chosen.bin_minutes) for i in range(chosen.bins)]
    return Window(chosen, first_bin, starts)


# --- Queries ---------------------------------------------------------------------------------------


def _sums() -> dict[str, Any]:
    """Aggregates named apart from the model's fields (Django refuses an annotation named like a field)."""
    sums: dict[str, Any] = {
        "s_count": Sum("count"),
        "s_errors": Sum("errors"),
        "s_total_ms": Sum("total_ms"),
        "s_max_ms": Max("max_ms"),
    }
    sums.update({f"s_{field}": Sum(field) for field in BUCKET_FIELDS})
    return sums


def _tally(row: Mapping[str, Any]) -> Tally:
    return metrics.tally_of({key.removeprefix("s_"): value for key, value in row.items() if key.startswith("s_")})


def _rows(window: Window) -> QuerySet[InvocationStat]:
    return InvocationStat.objects.filter(slot__gte=window.first_slot, slot__lt=window.end_slot)


def _binned(window: Window) -> QuerySet[InvocationStat]:
    # Integer division on every database: minutes since the epoch -> bin number.
    return _rows(window).annotate(
        bin=ExpressionWrapper(F("slot") / window.range.bin_minutes, output_field=BigIntegerField())
    )


def per_service(window: Window) -> dict[str, Tally]:
    rows = _rows(window).values("service").annotate(**_sums()).order_by()
    return {row["service"]: _tally(row) for row in rows}


def per_bin(window: Window) -> dict[int, Tally]:
    rows = _binned(window).values("bin").annotate(**_sums()).order_by()
    return {int(row["bin"]) - window.first_bin: _tally(row) for row in rows}


def per_bin_and_service(window: Window, services: Iterable[str]) -> dict[tuple[int, str], int]:
    rows = (_binned(window).filter(service__in=list(services)).values("bin", "service")
            .annotate(s_count=Sum("count")).order_by())
    return {(int(row["bin"]) - window.first_bin, row["service"]): int(row["s_count"] or 0) for row in rows}


# --- Presentation ----------------------------------------------------------------------------------


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _format_count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _format_pct(value: float) -> str:
    return f"{value:g}"


def service_rows(services: Mapping[str, Tally]) -> list[ServiceRow]:
    ordered = sorted(services.items(), key=lambda item: (-item[1].count, item[0]))
    return [
        ServiceRow(
            name=name,
            count=tally.count,
            errors=tally.errors,
            error_pct=100.0 * tally.errors / tally.count if tally.count else 0.0,
            p50=tally.percentile(0.5),
            p95=tally.percentile(0.95),
            p99=tally.percentile(0.99),
            max_ms=tally.max_ms,
            mean_ms=tally.total_ms / tally.count if tally.count else 0.0,
        )
        for name, tally in ordered
    ]


def _ticks(window: Window) -> list[tuple[int, str]]:
    chosen = window.range
    local = [timezone.localtime(start) for start in window.starts]
    ticks = [(index, local[index].strftime(chosen.tick_format))
             for index in range(len(local)) if (window.first_bin + index) % chosen.tick_every == 0]
    return ticks


def _bin_names(window: Window) -> list[str]:
    fmt = "%a %d %b %H:%M" if window.range.bin_minutes >= 60 else "%H:%M"
    step = timedelta(minutes=window.range.bin_minutes)
    names = []
    for start in window.starts:
        local = timezone.localtime(start)
        end = timezone.localtime(start + step)
        names.append(f"{local.strftime(fmt)}-{end.strftime('%H:%M')}" if step > timedelta(minutes=1)
                     else local.strftime(fmt))
    return names


def invocations_chart(window: Window, bins: Mapping[int, Tally], top: list[str],
                      counts: Mapping[tuple[int, str], int]) -> SafeString:
    size = window.range.bins
    series = [
        Series(name, [float(counts.get((i, name), 0)) for i in range(size)], charts.PALETTE[n % len(charts.PALETTE)])
        for n, name in enumerate(top)
    ]
    others = [float((bins[i].count if i in bins else 0) - sum(counts.get((i, name), 0) for name in top))
              for i in range(size)]
    if any(others):
        series.append(Series("other services", others, charts.GREY))
    highest = max((value or 0.0 for item in series for value in item.values), default=0.0)
    return charts.line_chart(
        label=f"Invocations {window.range.per}, by service", bins=_bin_names(window), ticks=_ticks(window),
        series=series, scale=charts.linear_scale(highest, minimum_top=4), format_value=_format_count,
    )


def error_rate_chart(window: Window, bins: Mapping[int, Tally]) -> SafeString:
    values: list[float | None] = []
    for i in range(window.range.bins):
        tally = bins.get(i)
        values.append(100.0 * tally.errors / tally.count if tally and tally.count else None)
    highest = max((value for value in values if value is not None), default=0.0)
    return charts.line_chart(
        label=f"Error rate {window.range.per} (%)", bins=_bin_names(window), ticks=_ticks(window),
        series=[Series("errors", values, "#d55e00")], scale=charts.linear_scale(highest, minimum_top=5),
        format_value=_format_pct, unit=" %",
    )


def latency_chart(window: Window, bins: Mapping[int, Tally]) -> SafeString:
    lines: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    for i in range(window.range.bins):
        tally = bins.get(i)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            lines[name].append(tally.percentile(q) if tally else None)
    present = [value for values in lines.values() for value in values if value is not None]
    series = [Series("p50", lines["p50"], "#009e73"), Series("p95", lines["p95"], "#e69f00"),
              Series("p99", lines["p99"], "#cc79a7")]
    return charts.line_chart(
        label=f"Latency percentiles {window.range.per} (ms, log scale)", bins=_bin_names(window),
        ticks=_ticks(window), series=series, scale=charts.log_scale(min(present, default=1.0),
                                                                     max(present, default=10.0)),
        format_value=lambda value: f"{value:g}", unit=" ms",
    )


# --- The view ----------------------------------------------------------------------------------------


def _flush_this_process() -> None:
    """Show this process's own latest invocations at once; other processes write theirs every few seconds."""
    try:
        metrics.recorder.flush()
    except Exception as exc:  # the page reads what is there; the poller will try again
        logger.warning("Invocation statistics could not be written: %s", exc)


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """``admin:dashboard``; staff with the permission to view services (``admin_view`` checked the login)."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    key = request.GET.get("range", DEFAULT_RANGE)
    if key not in RANGES:
        messages.warning(request, f"Unknown range {key[:20]!r}: showing the last hour.")
        key = DEFAULT_RANGE
    _flush_this_process()
    window = window_for(RANGES[key], timezone.now())
    services = per_service(window)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "ranges": RANGES.values(),
        "range": window.range,
        "since": window.starts[0],
        "flush_interval": settings.METRICS_FLUSH_INTERVAL,
        "empty": not services,
    }
    if services:
        bins = per_bin(window)
        rows = service_rows(services)
        top = [row.name for row in rows[:TOP_SERVICES]]
        total = metrics.Tally()
        for tally in services.values():
            total.merge(tally)
        context.update(
            invocations_chart=invocations_chart(window, bins, top, per_bin_and_service(window, top)),
            error_chart=error_rate_chart(window, bins),
            latency_chart=latency_chart(window, bins),
            legend=[(name, charts.PALETTE[n % len(charts.PALETTE)]) for n, name in enumerate(top)],
            has_others=len(rows) > len(top),
            other_color=charts.GREY,
            rows=rows[:MAX_TABLE_ROWS],
            hidden_rows=max(0, len(rows) - MAX_TABLE_ROWS),
            total=service_rows({"all": total})[0],
            service_count=len(rows),
        )
    return TemplateResponse(request, "admin/dashboard.html", context)
