"""Management API routes (mounted at /manage/api/v1/)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import ApiKeyViewSet, BasicAuthViewSet, JWTViewSet, TechAccountViewSet
from connections.api import VaultViewSet
from integration.api import InvokeView, ModuleViewSet, RestChannelViewSet, ServiceViewSet, WebSocketChannelViewSet
from scheduling.api import JobViewSet

router = DefaultRouter(trailing_slash=True)
router.register("services", ServiceViewSet, basename="service")
router.register("modules", ModuleViewSet, basename="module")
router.register("channels/rest", RestChannelViewSet, basename="rest-channel")
router.register("channels/websocket", WebSocketChannelViewSet, basename="websocket-channel")
router.register("security/basic-auth", BasicAuthViewSet, basename="basic-auth")
router.register("security/tech-accounts", TechAccountViewSet, basename="tech-account")
router.register("security/api-keys", ApiKeyViewSet, basename="api-key")
router.register("security/jwt", JWTViewSet, basename="jwt")
router.register("security/vault", VaultViewSet, basename="vault")
router.register("scheduling/jobs", JobViewSet, basename="job")

urlpatterns = [
    path("invoke/<str:service>", InvokeView.as_view(), name="invoke"),
    *router.urls,
]
