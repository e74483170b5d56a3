from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Scheduler jobs on Celery and django-celery-beat."""

    name = "scheduling"
    verbose_name = "Scheduler"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integration import api_routes
        from scheduling.api import JobViewSet

        api_routes.register("scheduling/jobs", JobViewSet, basename="job")
