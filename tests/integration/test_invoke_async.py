"""self.invoke_async: the invocation is handed to a real Celery worker over the Redis broker."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache


@pytest.mark.django_db(transaction=True)
def test_invoke_async_runs_the_service_in_a_celery_worker(deploy, worker_id) -> None:
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs the Redis broker (make test sets REDIS_URL)")
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    deploy("async_demo.py", """
        from django.core.cache import cache
        from integration.services import Service

        class Record(Service):
            def handle(self):
                cache.set("async-demo-" + self.request.input.key, {"cid": self.cid, "channel": self.channel.type}, 60)

        class Starter(Service):
            def handle(self):
                new_cid = self.invoke_async("async-demo.record", {"key": self.request.input.key})
                self.response.payload = {"async_cid": new_cid}
    """)
    # A queue of this test's own, so parallel test processes never take each other's tasks.
    queue = f"test-invoke-async-{worker_id}-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        with start_worker(app, queues=[queue], perform_ping_check=False, pool="solo", shutdown_timeout=10):
            from integration.invoke import invoke

            key = uuid.uuid4().hex
            started = invoke("async-demo.starter", {"key": key})
            deadline = time.monotonic() + 15
            recorded = None
            while recorded is None and time.monotonic() < deadline:
                recorded = cache.get(f"async-demo-{key}")
                time.sleep(0.05)
    finally:
        app.conf.task_default_queue = previous
    assert recorded is not None, "the worker never ran the service"
    # The worker ran it under the CID that invoke_async returned, on the invoke-async channel.
    assert recorded == {"cid": started.payload["async_cid"], "channel": "invoke-async"}
    assert started.payload["async_cid"] != started.cid
