"""Celery app: configuration from Django settings (CELERY_*), tasks from every app."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_registry(**kwargs: object) -> None:
    """Load the service snapshot in each worker process and keep it fresh."""
    from integration import poller, snapshot

    snapshot.warm()
    poller.ensure_poller()


@task_prerun.connect
def _fresh_db_connections(**kwargs: object) -> None:
    """As Django does before each request: drop a connection that failed or outlived DB_CONN_MAX_AGE."""
    from django.db import close_old_connections

    close_old_connections()
