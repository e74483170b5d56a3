"""The real Redis channel layer for one test, and a listener that stands in for a connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer


def use_test_layer(settings: Any, name: str = "test") -> str:
    """Point CHANNEL_LAYERS at Redis under a prefix of this test's own (parallel tests share one Redis db)."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test sets REDIS_URL)")
    prefix = f"{name}-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                    # the hosts as settings.py gives them (with its socket timeout), another prefix
                    "CONFIG": {"hosts": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"], "prefix": prefix}},
    }
    return prefix


def received_by_group(group: str, action: Callable[[], Any], timeout: float = 3.0) -> tuple[Any, dict | None]:
    """Join ``group`` as a connection would, run ``action()`` (sync, in this thread's context), and
    return its result and the event the group received (None if none came within ``timeout``)."""

    async def scenario() -> tuple[Any, dict | None]:
        layer = get_channel_layer()
        name = await layer.new_channel()
        await layer.group_add(group, name)
        try:
            result = await sync_to_async(action)()
            try:
                event = await asyncio.wait_for(layer.receive(name), timeout)
            except TimeoutError:
                event = None
            return result, event
        finally:
            await layer.group_discard(group, name)

    return async_to_sync(scenario)()
