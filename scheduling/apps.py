from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    """Scheduler jobs on Celery and django-celery-beat; filled in by the scheduler issue."""

    name = "scheduling"
    verbose_name = "Scheduler"
    default_auto_field = "django.db.models.BigAutoField"
