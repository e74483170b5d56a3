"""The one invocation path: every channel ends in ``invoke()``.

``invoke`` looks the service up in the snapshot's registry, validates input against its
declaration, runs ``handle()`` (or ``handle_<VERB>`` on HTTP channels), validates and
shapes the output, stamps the correlation id, times the call and logs it. Errors become
``SwitchboardError`` subclasses, which channels render in the one error shape
(``errors.error_body``); anything unexpected is logged with its traceback under the CID
and surfaces as a plain 500. This module sits outside ``Service`` so that service
authors cannot override any of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import current_app

from integration import metrics
from integration import push as pushes
from integration import snapshot as snapshots
from integration.cid import new_cid
from integration.errors import InternalError, MethodNotAllowed, ServiceNotFound, SwitchboardError
from integration.registry import ServiceInfo
from integration.services import (
    Bunch,
    ChannelInfo,
    CIDLogger,
    HTTPRequestInfo,
    Request,
    Response,
    Service,
)

__all__ = ["invoke", "invoke_info", "new_cid"]

logger = logging.getLogger("integration.invoke")
MAX_DEPTH = 64


@dataclass
class Result:
    """The outcome of a successful invocation, ready for a channel to deliver."""

    cid: str
    service: str
    payload: Any
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    duration_ms: float = 0.0


def build_input(info: ServiceInfo, payload: Any, params: dict[str, Any] | None) -> Any:
    """Validated input: payload keys with channel parameters written over them (parameters win)."""
    data = payload
    if params:
        data = {**payload, **params} if isinstance(payload, dict) else dict(params)
    if info.io.input is not None:
        return info.io.parse_input(data)
    return Bunch(data) if isinstance(data, dict) else Bunch()


class Invoker:
    """Runs one top-level invocation and the nested ones it makes (same CID, same snapshot)."""

    def __init__(self, cid: str, snap: snapshots.Snapshot) -> None:
        self.cid = cid
        self.snapshot = snap
        self.depth = 0

    def lookup(self, name: str) -> ServiceInfo:
        info = self.snapshot.registry.get(name)
        if info is None:
            raise ServiceNotFound(name)
        return info

    def run(
        self,
        info: ServiceInfo,
        payload: Any,
        *,
        channel: ChannelInfo,
        raw: bytes | str = b"",
        http: HTTPRequestInfo | None = None,
        params: dict[str, Any] | None = None,
    ) -> Result:
        started = time.perf_counter()
        failed = True
        try:
            request = Request(
                payload=payload,
                raw_request=raw,
                http=http or HTTPRequestInfo(),
                channel_params=params or {},
            )
            request.input = build_input(info, payload, params)
            service = info.cls()
            service.cid = self.cid
            service.request = request
            service.response = Response()
            service.channel = channel
            service.logger = CIDLogger(logging.getLogger(f"service.{info.name}"), {"cid": self.cid})
            service._invoker = self
            handler = self._handler(service, info, channel, request.http.method)
            handler()
            response = service.response
            rendered = info.io.render_output(response.payload)
            failed = response.status_code >= 500
            duration = (time.perf_counter() - started) * 1000
            return Result(self.cid, info.name, rendered, response.status_code, response.headers,
                          response.content_type, duration)
        except SwitchboardError as exc:
            failed = exc.status_code >= 500
            log = logger.error if failed else logger.info
            log("[%s] %s -> %s %s", self.cid, info.name, exc.status_code, exc.details)
            raise
        except Exception:
            logger.exception("[%s] Service %s failed", self.cid, info.name)
            raise InternalError() from None
        finally:
            duration = (time.perf_counter() - started) * 1000
            metrics.recorder.record(info.name, duration, failed)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("[%s] %s via %s in %.2f ms", self.cid, info.name, channel.type, duration)

    @staticmethod
    def _handler(service: Service, info: ServiceInfo, channel: ChannelInfo, method: str) -> Any:
        if info.handlers and channel.type == "rest":
            if method not in info.handlers:
                raise MethodNotAllowed(sorted(info.handlers))
            return getattr(service, f"handle_{method}")
        return service.handle

    @property
    def out(self) -> Any:
        """``self.out`` of the services it runs: the snapshot's outgoing connections (``connections.outgoing``)."""
        return self.snapshot.outgoing.namespace

    def submit_async(self, name: str, payload: Any, parent_cid: str | None = None) -> str:
        """Hand an invocation to a Celery worker (task ``integration.invoke_async``); its new CID."""
        return submit_async(name, payload, parent_cid)

    def push(self, data: Any, **recipients: Any) -> None:
        pushes.push(data, **recipients)

    def invoke_nested(self, caller: Service, name: str, payload: Any) -> Any:
        info = self.lookup(name)
        if info.cls is type(caller):
            raise SwitchboardError("A service cannot invoke itself")
        if self.depth >= MAX_DEPTH:
            raise SwitchboardError(f"Invocations nested deeper than {MAX_DEPTH} levels")
        self.depth += 1
        try:
            result = self.run(info, payload, channel=ChannelInfo(type="invoke", name=caller.channel.name))
        finally:
            self.depth -= 1
        return result.payload


def submit_async(name: str, payload: Any, parent_cid: str | None = None) -> str:
    """Queue an invocation for a Celery worker by the task's name (``integration.tasks``); its new CID."""
    cid = new_cid()
    current_app.send_task("integration.invoke_async", args=(name, payload, cid, parent_cid))
    return cid


def call_service(name: str, payload: Any, *, cid: str, channel: ChannelInfo) -> Result | None:
    """Invoke a service by name from code a channel hands this to (a security type's chooser service).

    None when no service of that name is deployed. Security types receive this function from the
    channel (``request.call_service``) instead of importing the invocation path.
    """
    snap = snapshots.current()
    info = snap.registry.get(name)
    if info is None:
        return None
    return Invoker(cid, snap).run(info, payload, channel=channel)


def invoke(
    name: str,
    payload: Any = None,
    *,
    channel: str | ChannelInfo = "invoke",
    cid: str | None = None,
    raw: bytes | str = b"",
    http: HTTPRequestInfo | None = None,
    params: dict[str, Any] | None = None,
) -> Result:
    """Invoke a service by name and return its ``Result``; raises ``SwitchboardError`` subclasses."""
    channel_info = channel if isinstance(channel, ChannelInfo) else ChannelInfo(type=channel)
    invoker = Invoker(cid or new_cid(), snapshots.current())
    info = invoker.lookup(name)
    return invoker.run(info, payload, channel=channel_info, raw=raw, http=http, params=params)


def invoke_info(
    info: ServiceInfo,
    payload: Any,
    *,
    cid: str,
    snap: snapshots.Snapshot,
    channel: ChannelInfo,
    raw: bytes | str = b"",
    http: HTTPRequestInfo | None = None,
    params: dict[str, Any] | None = None,
) -> Result:
    """The same path for a channel that has already resolved its service from the snapshot."""
    return Invoker(cid, snap).run(info, payload, channel=channel, raw=raw, http=http, params=params)
