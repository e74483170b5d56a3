"""Management API for services, REST and WebSocket channels (with their connected clients), and invoke."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integration.admin import live_client_count
from integration.api_base import ConfigViewSet, _cid, api_error
from integration.channels.rest import error_response, render_result
from integration.deploy import deploy_sources
from integration.errors import BadRequest, InternalError, SwitchboardError
from integration.invoke import invoke
from integration.jsonio import JSONParser
from integration.models import DeployedService, RestChannel, ServiceModule, WebSocketChannel, WebSocketClient
from integration.serializers import (
    DeploySerializer,
    RestChannelSerializer,
    ServiceDetailSerializer,
    ServiceSerializer,
    WebSocketChannelSerializer,
    WebSocketClientSerializer,
)
from integration.services import ChannelInfo

logger = logging.getLogger(__name__)


class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployed services. ``POST`` deploys a module (source as JSON or a multipart file)."""

    queryset = DeployedService.objects.select_related("module").order_by("name")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    parser_classes = [JSONParser, parsers.MultiPartParser, parsers.FormParser]

    def get_serializer_class(self) -> type:
        if self.action == "retrieve":
            return ServiceDetailSerializer
        if self.action == "create":
            return DeploySerializer
        return ServiceSerializer

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        search = self.request.query_params.get("search")
        if search:
            queryset = queryset.filter(name__icontains=search)
        return queryset

    def create(self, request: Request) -> Response:
        serializer = DeploySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        (outcome,) = deploy_sources(
            [(serializer.validated_data["filename"], serializer.validated_data["source"])],
            ServiceModule.Origin.API,
        )
        if not outcome.ok:
            raise ValidationError({"source": [outcome.error]})
        return Response(
            {"module": outcome.module, "services": outcome.services, "changed": outcome.changed},
            status=status.HTTP_201_CREATED if outcome.changed else status.HTTP_200_OK,
        )


class RestChannelViewSet(ConfigViewSet):
    queryset = RestChannel.objects.select_related("service", "security").order_by("name")
    serializer_class = RestChannelSerializer

    def get_queryset(self) -> Any:
        """Filters: ``?search=`` (name or path), ``?service=``, ``?method=``, ``?is_active=true|false``."""
        queryset = super().get_queryset()
        params = self.request.query_params
        if "method" in params:
            queryset = queryset.filter(method=params["method"].upper())
        if params.get("is_active") in ("true", "false"):
            queryset = queryset.filter(is_active=params["is_active"] == "true")
        if params.get("search"):
            queryset = queryset.filter(name__icontains=params["search"]) | queryset.filter(
                url_path__icontains=params["search"]
            )
        if params.get("service"):
            queryset = queryset.filter(service__name=params["service"])
        return queryset


class WebSocketChannelViewSet(ConfigViewSet):
    """WebSocket channels, with how many clients each has now; ``{id}/clients/`` lists them.

    ``DELETE {id}/clients/{client_id}/`` asks that connection to close (code 4005), wherever
    it is served: 202, since the server holding it closes it a moment later; 503 (the one
    error shape) when the channel layer cannot be reached within ``PUSH_TIMEOUT``.
    """

    queryset = WebSocketChannel.objects.select_related("service", "security").order_by("name")
    serializer_class = WebSocketChannelSerializer

    @property
    def required_permission(self) -> str | None:
        """Reading clients needs the channel's view permission; disconnecting one, its change permission."""
        if self.action == "clients":
            return "integration.view_websocketchannel"
        if self.action == "disconnect":
            return "integration.change_websocketchannel"
        return None  # the model's permission for the method (integration.permissions)

    def get_queryset(self) -> Any:
        """Filters: ``?search=`` (name or path), ``?service=``, ``?security=``, ``?is_active=true|false``."""
        queryset = super().get_queryset().annotate(client_count=live_client_count())
        params = self.request.query_params
        if params.get("is_active") in ("true", "false"):
            queryset = queryset.filter(is_active=params["is_active"] == "true")
        if params.get("search"):
            queryset = queryset.filter(name__icontains=params["search"]) | queryset.filter(
                path__icontains=params["search"]
            )
        if params.get("service"):
            queryset = queryset.filter(service__name=params["service"])
        if params.get("security"):
            queryset = queryset.filter(security__name=params["security"])
        return queryset

    @extend_schema(responses=WebSocketClientSerializer(many=True))
    @action(detail=True, methods=["get"], serializer_class=WebSocketClientSerializer)
    def clients(self, request: Request, pk: str | None = None) -> Response:
        """The channel's connected clients, newest first (``?username=`` narrows them; paged)."""
        channel = self.get_object()
        clients = WebSocketClient.objects.live().filter(channel=channel).order_by("-connected_at", "-pk")
        if request.query_params.get("username"):
            clients = clients.filter(username=request.query_params["username"])
        page = self.paginate_queryset(clients)
        return self.get_paginated_response(WebSocketClientSerializer(page, many=True).data)

    # 404: no such client on this channel; 503: the channel layer cannot be reached (both in the one error shape).
    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT,
                                            503: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["delete"], url_path=r"clients/(?P<client_id>[0-9a-f]{32})")
    def disconnect(self, request: Request, pk: str | None = None, client_id: str = "") -> Response:
        from integration.push import PushFailed, disconnect

        channel = self.get_object()
        if not WebSocketClient.objects.live().filter(channel=channel, client_id=client_id).exists():
            raise NotFound(f"No client {client_id} is connected to this channel")
        try:
            disconnect(client_id)  # bounded by PUSH_TIMEOUT
        except PushFailed as exc:
            response = api_error(request, status.HTTP_503_SERVICE_UNAVAILABLE,
                                 f"{exc.details}; the client was not disconnected")
            response["Retry-After"] = "5"  # about how long a restarted Redis takes to be joined again
            return response
        return Response({"client_id": client_id, "disconnecting": True}, status=status.HTTP_202_ACCEPTED)


class InvokeView(APIView):
    """``POST /manage/api/v1/invoke/{service}`` with a JSON body: the service's response as is."""

    required_permission = "integration.invoke_service"

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, service: str) -> HttpResponse:
        cid = _cid(request)
        try:
            # DRF parses lazily, within integration.jsonio's limits (REST_FRAMEWORK's parsers): the one shape here.
            payload = request.data if request.body else None
        except ParseError as exc:
            return error_response(BadRequest(str(exc.detail)), cid)
        try:
            user = getattr(request.user, "username", "")
            result = invoke(service, payload, channel=ChannelInfo(type="invoke", name="manage-api", username=user),
                            cid=cid)
            response = render_result(result)
        except SwitchboardError as exc:
            return error_response(exc, cid)
        except Exception:  # output JSON cannot carry (nested too deep, say): the service's bug, logged
            logger.exception("[%s] The response of %s could not be rendered", cid, service[:200])
            return error_response(InternalError(), cid)
        response["X-Zato-Response-Time"] = f"{result.duration_ms:.3f}"
        return response
