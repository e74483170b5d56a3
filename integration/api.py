"""Management API for services and REST channels, and the invoke endpoint."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, parsers, status, viewsets
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integration.api_base import ConfigViewSet, _cid
from integration.channels.rest import error_response, render_result
from integration.deploy import deploy_sources
from integration.errors import BadRequest, SwitchboardError
from integration.invoke import invoke
from integration.models import DeployedService, RestChannel, ServiceModule
from integration.serializers import (
    DeploySerializer,
    RestChannelSerializer,
    ServiceDetailSerializer,
    ServiceSerializer,
)
from integration.services import ChannelInfo


class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployed services. ``POST`` deploys a module (source as JSON or a multipart file)."""

    queryset = DeployedService.objects.select_related("module").order_by("name")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    parser_classes = [parsers.JSONParser, parsers.MultiPartParser, parsers.FormParser]

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


class InvokeView(APIView):
    """``POST /manage/api/v1/invoke/{service}`` with a JSON body: the service's response as is."""

    required_permission = "integration.invoke_service"

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, service: str) -> HttpResponse:
        cid = _cid(request)
        try:
            payload = request.data if request.body else None
        except ParseError as exc:  # DRF parses lazily; report it in the one shape
            return error_response(BadRequest(f"Invalid JSON in request body: {exc.detail}"), cid)
        try:
            user = getattr(request.user, "username", "")
            result = invoke(service, payload, channel=ChannelInfo(type="invoke", name="manage-api", username=user),
                            cid=cid)
        except SwitchboardError as exc:
            return error_response(exc, cid)
        response = render_result(result)
        response["X-Zato-Response-Time"] = f"{result.duration_ms:.3f}"
        return response
