"""Celery tasks of the service runtime: asynchronous invocations (``Service.invoke_async``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from integration.errors import SwitchboardError
from integration.invoke import invoke, submit_async

logger = logging.getLogger(__name__)


@shared_task(name="integration.invoke_async", ignore_result=True)
def invoke_async(name: str, payload: Any, cid: str, parent_cid: str | None = None) -> None:
    try:
        invoke(name, payload, channel="invoke-async", cid=cid)
    except SwitchboardError as exc:
        logger.warning("[%s] Async invocation of %s (from %s) failed: %s", cid, name, parent_cid, exc.details)


def submit_invocation(name: str, payload: Any, parent_cid: str | None = None) -> str:
    """Queue ``name`` for a worker; its new CID (``integration.invoke.submit_async``, by the task's name)."""
    return submit_async(name, payload, parent_cid)
