"""Management API routes (mounted at /manage/api/v1/), from the resources each app registered."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from integration import api_routes
from integration.api import InvokeView

router = DefaultRouter(trailing_slash=True)
for route in api_routes.routes():
    router.register(route.prefix, route.viewset, basename=route.basename)

urlpatterns = [
    path("invoke/<str:service>", InvokeView.as_view(), name="invoke"),
    *router.urls,
]
