"""Reserved URL space: admin, management API, schema, health and Zato compatibility.

Everything else belongs to REST channels (the last, catch-all pattern). In production
``config.wsgi`` sends non-reserved paths to the channel dispatcher before Django's URL
resolver runs; the catch-all here serves ASGI servers and the test client.
"""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from accounts.views import jwt_log_in, jwt_log_out
from integration.channels.rest import channel_view
from integration.views import healthz, metrics, zato_ping

urlpatterns = [
    path("admin/", admin.site.urls),
    path("manage/api/v1/", include("integration.urls")),
    path("manage/api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("zato/ping", zato_ping, name="zato-ping"),
    path("zato/jwt/log-in", jwt_log_in, name="jwt-log-in"),
    path("zato/jwt/log-out", jwt_log_out, name="jwt-log-out"),
    re_path(r"^", channel_view),
]

handler404 = "integration.views.not_found"
handler500 = "integration.views.server_error"
