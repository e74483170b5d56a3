"""Management API for services and modules, REST and WebSocket channels (with their connected clients), and invoke.

Search, filters, paging and the refusal of text the database cannot hold come from the one
base viewset (``integration.api_base``); each resource here says what to search and filter.
"""

from __future__ import annotations

import logging
from typing import Any

import django_filters
from django.db import transaction
from django.db.models import ProtectedError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, OpenApiTypes, extend_schema
from rest_framework import mixins, parsers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integration.admin import live_client_count
from integration.api_base import ConfigViewSet, ManagementViewSet, _cid, api_error
from integration.api_filters import StrictBooleanFilter, UpperChoiceFilter, names_filter
from integration.api_schema import ManagementSchema
from integration.channels.rest import error_response, render_result
from integration.deploy import deploy_sources
from integration.errors import BadRequest, InternalError, SwitchboardError
from integration.invoke import invoke
from integration.jsonio import JSONParser
from integration.models import (
    AMQPChannel,
    DeployedService,
    FileChannel,
    RestChannel,
    ServiceModule,
    WebSocketChannel,
    WebSocketClient,
)
from integration.serializers import (
    AMQPChannelSerializer,
    DeployResultSerializer,
    DeploySerializer,
    FileChannelSerializer,
    ModuleDetailSerializer,
    ModuleSerializer,
    RestChannelSerializer,
    ServiceDetailSerializer,
    ServiceSerializer,
    WebSocketChannelSerializer,
    WebSocketClientSerializer,
)
from integration.services import HTTP_VERBS, ChannelInfo
from integration.signals import one_change

_NAME = "[^/]+"  # services and modules are looked up by name; dots are part of names

logger = logging.getLogger(__name__)


class ServiceFilter(django_filters.FilterSet):
    module = names_filter("module__name", "Only services of this module (by name).")
    origin = django_filters.ChoiceFilter(field_name="module__origin", choices=ServiceModule.Origin.choices,
                                         help_text="Only services deployed this way.")

    class Meta:
        model = DeployedService
        fields = ["module", "origin"]


class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ManagementViewSet):
    """Deployed services. ``POST`` deploys a module (source as JSON or a multipart file).

    ``?search=`` looks in service and module names. Services are removed with their module
    (``DELETE modules/{name}/``), never by deploying a file without them.
    """

    queryset = DeployedService.objects.select_related("module").order_by("name")
    lookup_field = "name"
    lookup_value_regex = _NAME
    parser_classes = [JSONParser, parsers.MultiPartParser, parsers.FormParser]
    search_fields = ["name", "module__name"]
    filterset_class = ServiceFilter

    def get_serializer_class(self) -> type:
        if self.action == "retrieve":
            return ServiceDetailSerializer
        if self.action == "create":
            return DeploySerializer
        return ServiceSerializer

    @extend_schema(
        request={"application/json": DeploySerializer, "multipart/form-data": DeploySerializer},
        responses={
            201: OpenApiResponse(DeployResultSerializer, description="Deployed: the module's services."),
            200: OpenApiResponse(DeployResultSerializer, description="The same source was deployed already."),
        },
    )
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
            DeployResultSerializer({"module": outcome.module, "services": outcome.services,
                                    "changed": outcome.changed}).data,
            status=status.HTTP_201_CREATED if outcome.changed else status.HTTP_200_OK,
        )


class ModuleFilter(django_filters.FilterSet):
    origin = django_filters.ChoiceFilter(choices=ServiceModule.Origin.choices, help_text="How it was deployed.")
    rejected = StrictBooleanFilter(method="filter_rejected",
                                   help_text="true: modules whose latest upload was rejected; false: the others.")

    class Meta:
        model = ServiceModule
        fields = ["origin", "rejected"]

    def filter_rejected(self, queryset: Any, name: str, value: bool) -> Any:
        return queryset.exclude(last_error="") if value else queryset.filter(last_error="")


class ModuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ManagementViewSet):
    """Service modules: what was deployed from each file, and why its latest upload was rejected, if it was.

    ``DELETE {name}/`` undeploys a module and its services: the explicit way to remove
    services (a file without them is refused). It is refused with 409 while channels or
    jobs use them, and for built-in modules.
    """

    queryset = ServiceModule.objects.prefetch_related("services").order_by("name")
    lookup_field = "name"
    lookup_value_regex = _NAME
    search_fields = ["name", "filename"]
    filterset_class = ModuleFilter

    def get_serializer_class(self) -> type:
        return ModuleDetailSerializer if self.action == "retrieve" else ModuleSerializer

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()
        # A list shows no source (it can be long); the module's own page does.
        return queryset if self.action == "retrieve" else queryset.defer("source")

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            module = self.get_object()
            if module.origin == ServiceModule.Origin.BUILTIN:
                return api_error(request, status.HTTP_409_CONFLICT,
                                 f"`{module.name}` is a built-in module: it ships with the platform and cannot be "
                                 "deleted")
            try:
                with transaction.atomic(), one_change():
                    module.delete()
            except ProtectedError as exc:
                users = sorted((str(type(obj)._meta.verbose_name), str(obj), obj.pk) for obj in exc.protected_objects)
                listed = ", ".join(f"{kind} `{name}`" for kind, name, _ in users)
                return api_error(
                    request, status.HTTP_409_CONFLICT,
                    f"Its services are in use by {listed}; delete them or point them at other services first",
                    dependants=[{"type": kind, "name": name, "id": pk} for kind, name, pk in users],
                )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RestChannelFilter(django_filters.FilterSet):
    service = names_filter("service__name", "Only channels that invoke this service (by name).")
    security = names_filter("security__name", "Only channels protected by this security definition (by name).")
    method = UpperChoiceFilter(choices=[(verb, verb) for verb in HTTP_VERBS],
                               help_text="Only channels for this HTTP method (any case).")
    is_active = StrictBooleanFilter(help_text="true or false.")
    data_format = django_filters.ChoiceFilter(choices=RestChannel.DataFormat.choices)

    class Meta:
        model = RestChannel
        fields = ["service", "security", "method", "is_active", "data_format"]


class RestChannelViewSet(ConfigViewSet):
    """REST channels. ``?search=`` looks in names and URL paths."""

    queryset = RestChannel.objects.select_related("service", "security").order_by("name")
    serializer_class = RestChannelSerializer
    search_fields = ["name", "url_path"]
    filterset_class = RestChannelFilter


class WebSocketChannelFilter(django_filters.FilterSet):
    service = names_filter("service__name", "Only channels that invoke this service (by name).")
    security = names_filter("security__name", "Only channels protected by this security definition (by name).")
    is_active = StrictBooleanFilter(help_text="true or false.")

    class Meta:
        model = WebSocketChannel
        fields = ["service", "security", "is_active"]


class WebSocketClientFilter(django_filters.FilterSet):
    username = django_filters.CharFilter(help_text="Only clients logged in as this user.")

    class Meta:
        model = WebSocketClient
        fields = ["username"]


class WebSocketChannelViewSet(ConfigViewSet):
    """WebSocket channels, with how many clients each has now; ``{id}/clients/`` lists them.

    ``?search=`` looks in names and paths. ``DELETE {id}/clients/{client_id}/`` asks that
    connection to close (code 4005), wherever it is served: 202, since the server holding
    it closes it a moment later; 503 (the one error shape) when the channel layer cannot be
    reached within ``PUSH_TIMEOUT``.
    """

    queryset = WebSocketChannel.objects.select_related("service", "security").order_by("name")
    serializer_class = WebSocketChannelSerializer
    search_fields = ["name", "path"]
    filterset_class = WebSocketChannelFilter
    error_statuses = {"disconnect": (503,)}  # the channel layer may be down

    @property
    def required_permission(self) -> str | None:
        """Reading clients needs the channel's view permission; disconnecting one, its change permission."""
        if self.action == "clients":
            return "integration.view_websocketchannel"
        if self.action == "disconnect":
            return "integration.change_websocketchannel"
        return None  # the model's permission for the method (integration.permissions)

    def get_queryset(self) -> Any:
        return super().get_queryset().annotate(client_count=live_client_count())

    @extend_schema(responses=WebSocketClientSerializer(many=True), filters=False,
                   parameters=[OpenApiParameter("username", str, description="Only clients logged in as this user.")])
    @action(detail=True, methods=["get"], serializer_class=WebSocketClientSerializer)
    def clients(self, request: Request, pk: str | None = None) -> Response:
        """The channel's connected clients, newest first (``?username=`` narrows them; paged)."""
        channel = self.get_object()
        clients = WebSocketClient.objects.live().filter(channel=channel).order_by("-connected_at", "-pk")
        narrowed = WebSocketClientFilter(request.query_params, queryset=clients, request=request)
        if not narrowed.is_valid():
            raise ValidationError(narrowed.errors)
        page = self.paginate_queryset(narrowed.qs)
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
    schema = ManagementSchema()

    @extend_schema(
        request={"application/json": OpenApiTypes.ANY},
        parameters=[OpenApiParameter(
            "service", str, OpenApiParameter.PATH, description="The service's name.",
            examples=[OpenApiExample("ping", value="zato.ping", summary="The built-in ping service")],
        )],
        responses={
            (200, "*/*"): OpenApiResponse(
                OpenApiTypes.ANY,
                description="The service's response as the service made it: any content type (JSON, text, "
                "application/pdf...), with `X-Zato-CID` and `X-Zato-Response-Time`. An empty answer whose "
                "service chose no content type is `text/plain`.",
            ),
            ("default", "*/*"): OpenApiResponse(
                OpenApiTypes.ANY,
                description="A service may answer with any status code it sets, and any body. Errors of the "
                "platform (service not deployed: 404, invalid JSON: 400, credentials: 401/403/429) and errors "
                "a service raises come in the one error shape `{\"result\": \"Error\", \"cid\", \"details\"}`.",
            ),
        },
    )
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
        if not response.content and not result.content_type:
            # Nothing to parse: an empty answer is not labelled JSON (which it cannot be).
            response["Content-Type"] = "text/plain; charset=utf-8"
        response["X-Zato-Response-Time"] = f"{result.duration_ms:.3f}"
        return response


class FileChannelFilter(django_filters.FilterSet):
    service = names_filter("service__name", "Only channels that invoke this service (by name).")
    is_active = StrictBooleanFilter(help_text="true or false.")

    class Meta:
        model = FileChannel
        fields = ["service", "is_active", "recursive", "after_success", "after_failure"]


class FileChannelViewSet(ConfigViewSet):
    """File channels. ``?search=`` looks in names, directories and patterns."""

    queryset = FileChannel.objects.select_related("service").order_by("name")
    serializer_class = FileChannelSerializer
    search_fields = ["name", "directory", "patterns"]
    filterset_class = FileChannelFilter


class AMQPChannelFilter(django_filters.FilterSet):
    service = names_filter("service__name", "Only channels that invoke this service (by name).")
    broker = names_filter("broker__name", "Only channels on this broker connection (by name).")
    is_active = StrictBooleanFilter(help_text="true or false.")

    class Meta:
        model = AMQPChannel
        fields = ["service", "broker", "is_active", "data_format"]


class AMQPChannelViewSet(ConfigViewSet):
    """AMQP channels. ``?search=`` looks in names and queue names."""

    queryset = AMQPChannel.objects.select_related("service", "broker").order_by("name")
    serializer_class = AMQPChannelSerializer
    search_fields = ["name", "queue"]
    filterset_class = AMQPChannelFilter
