"""The platform's URLs with one bench-only view in front: a bare JSON view behind Django's full stack."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import urlpatterns as platform_urlpatterns


def bare(request: HttpRequest) -> JsonResponse:
    """The throughput baseline: what a hello-world service returns, from a plain Django view."""
    return JsonResponse({"hello": "world"})


urlpatterns = [path("bench/bare", bare, name="bench-bare"), *platform_urlpatterns]
