"""Admin for scheduler jobs: list, edit, execute now, activate/deactivate, run history.

Every write goes through ``scheduling.jobs`` so a job and its django-celery-beat
PeriodicTask change together. django-celery-beat's own pages stay visible but read-only:
its rows are derived from jobs and would be overwritten by the next save of the job.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from scheduling import jobs, plans
from scheduling.models import Job, JobRun
from scheduling.tasks import execute_now


class JobForm(forms.ModelForm):
    class Meta:
        model = Job
        fields = ["name", "is_active", "service", "job_type", "start_date", "extra", "weeks", "days", "hours",
                  "minutes", "seconds", "repeats", "cron_definition", "timezone"]

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        # A new or re-planned job must be able to run: a one-time job in the past cannot.
        try:
            jobs.check_new_plan(self.instance)
        except ValidationError as exc:
            self._update_errors(exc)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    form = JobForm
    list_display = ["name", "job_type", "service", "plan_display", "next_run_display", "last_run_display",
                    "is_active"]
    list_filter = ["job_type", "is_active"]
    search_fields = ["name", "service__name"]
    list_select_related = ["service"]
    autocomplete_fields = ["service"]
    actions = ["execute_selected", "activate_selected", "deactivate_selected"]
    readonly_fields = ["run_history"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "service", "job_type", "start_date"]}),
        ("Interval-based", {"fields": [("weeks", "days", "hours", "minutes", "seconds"), "repeats"]}),
        ("Cron-style", {"fields": ["cron_definition", "timezone"]}),
        ("Data", {"fields": ["extra"]}),
        ("Recent runs", {"fields": ["run_history"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        latest = JobRun.objects.filter(job=OuterRef("pk")).order_by("-started")
        return super().get_queryset(request).annotate(
            last_status=Subquery(latest.values("status")[:1]),
            last_started=Subquery(latest.values("started")[:1]),
        )

    @admin.display(description="plan")
    def plan_display(self, job: Job) -> str:
        if job.job_type == plans.CRON_STYLE:
            return f"{job.cron_definition} ({job.timezone})"
        if job.job_type == plans.INTERVAL_BASED:
            every = job.interval
            repeats = f", {job.repeats} times" if job.repeats else ""
            return f"every {every}{repeats}"
        return "once"

    @admin.display(description="next run")
    def next_run_display(self, job: Job) -> str:
        upcoming = job.next_run()
        return timezone.localtime(upcoming).strftime("%Y-%m-%d %H:%M:%S") if upcoming else "-"

    @admin.display(description="last run", ordering="last_started")
    def last_run_display(self, job: Job) -> str:
        started = getattr(job, "last_started", None)
        if started is None:
            return "never"
        status = getattr(job, "last_status", "")
        colour = {"ok": "#2e7d32", "error": "#ba2121", "missed": "#8a6d3b"}.get(status, "inherit")
        when = timezone.localtime(started).strftime("%Y-%m-%d %H:%M:%S")
        return format_html('<span style="color:{}">{}</span> {}', colour, status, when)

    @admin.display(description="recent runs")
    def run_history(self, job: Job) -> str:
        if job.pk is None:
            return "-"
        runs = list(job.runs.all()[:20])
        if not runs:
            return "No runs yet."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(run.scheduled_for).strftime("%Y-%m-%d %H:%M:%S"),
                    "execute now" if run.manual else "scheduled",
                    run.status,
                    f"{run.duration_ms:.1f} ms" if run.duration_ms is not None else "-",
                    run.cid,
                    run.error[:300],
                )
                for run in runs
            ),
        )
        return format_html(
            "<table><thead><tr><th>planned</th><th>how</th><th>status</th><th>duration</th><th>CID</th>"
            "<th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        # The form has validated; save_job validates again inside its transaction.
        jobs.save_job(obj)

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        jobs.delete_job(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset.select_related("periodic_task"):
            jobs.delete_job(job)

    # --- Execute now, activate, deactivate -------------------------------------------------------

    def get_urls(self) -> list[Any]:
        extra = [path("<int:pk>/execute/", self.admin_site.admin_view(self.execute_view),
                      name="scheduling_job_execute")]
        return extra + super().get_urls()

    def execute_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_execute_permission(request):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=pk)
        self._queue(request, job)
        return HttpResponseRedirect(reverse("admin:scheduling_job_change", args=[job.pk]))

    def has_execute_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integration.invoke_service")

    def _queue(self, request: HttpRequest, job: Job) -> None:
        try:
            cid = execute_now(job)
        except Exception as exc:  # the broker is down: say so, change nothing
            self.message_user(request, f"Could not queue {job.name}: {exc}", messages.ERROR)
            return
        self.message_user(request, f"{job.name} queued to run now (CID {cid}); its run appears under Recent runs.")

    @admin.action(description="Execute selected jobs now", permissions=["execute"])
    def execute_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            self._queue(request, job)

    @admin.action(description="Activate selected jobs", permissions=["change"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected jobs", permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._set_active(request, queryset, False)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Job], active: bool) -> None:
        changed, refused = 0, []
        for job in queryset.select_related("service", "periodic_task"):
            try:
                jobs.set_active(job, active)
                changed += 1
            except ValidationError as exc:
                refused.append(f"{job.name}: {'; '.join(exc.messages)}")
        if changed:
            self.message_user(request, f"{changed} job(s) {'activated' if active else 'deactivated'}.")
        if refused:
            self.message_user(request, "Not changed: " + " | ".join(refused), messages.ERROR)


class _ReadOnly:
    """django-celery-beat's pages, kept for looking only: jobs own these rows."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}


for _model, _admin_class in [
    (PeriodicTask, beat_admin.PeriodicTaskAdmin),
    (IntervalSchedule, beat_admin.IntervalScheduleAdmin),
    (CrontabSchedule, beat_admin.CrontabScheduleAdmin),
    (SolarSchedule, beat_admin.SolarScheduleAdmin),
    (ClockedSchedule, beat_admin.ClockedScheduleAdmin),
]:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(_admin_class.__name__, (_ReadOnly, _admin_class), {}))
