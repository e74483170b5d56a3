"""Celery app: configuration from Django settings (CELERY_*), tasks from every app."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_registry(**kwargs: object) -> None:
    """Load the service snapshot in each worker process and keep it fresh."""
    from integration import snapshot

    snapshot.warm()
    snapshot.ensure_poller()
