"""Switchboard settings: one file, every value from the environment.

The defaults give the embedded setup that ``make run`` starts on a fresh machine
(SQLite in ``var/``, a broker kept on local files). ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL and Redis. Every variable read here is listed in
the README's configuration reference.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url

from config.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VAR_DIR", BASE_DIR / "var")

# --- Core ------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY from the environment; on a development machine, one kept in var/."""
    key = env_secret("SECRET_KEY")
    if key:
        return key
    key_file = VAR_DIR / "secret-key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Django's admin with Switchboard's site as the default one (TOTP, dashboard, page sizes):
    # every app's admin registrations, third-party ones included, land on it.
    "accounts.apps.SwitchboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "rest_framework",
    "drf_spectacular",
    "django_filters",  # its filter form on the browsable API pages
    "django_celery_beat",
    "integration",
    "accounts",
    "connections",
    "scheduling",
]

# REST channels do not pass through this list: config/wsgi.py sends every path outside
# the reserved prefixes straight to integration.channels.rest, which does its own CID,
# security and error handling. This list serves the admin and the management API.
MIDDLEWARE = [
    "integration.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
# SQLite in var/ by default (WAL, so several processes can read while one writes);
# DATABASE_URL=postgres://... in production and in the test suite.

_sqlite_path = VAR_DIR / "switchboard.sqlite3"
try:
    _default_db = dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{_sqlite_path}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
except ValueError as exc:
    raise ImproperlyConfiguredEnv(f"DATABASE_URL cannot be parsed: {exc}") from None
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _default_db["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery --------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Without Redis the broker keeps its messages in files under var/broker, which every
# local process (web, worker, beat) shares: no server to install.
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Tasks a worker runs on one database connection before opening a new one (Celery's default opens
# one per task: it halved the scheduler's throughput). config/celery.py drops a broken or too old
# connection before each task, as Django does before each request.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# django-celery-beat's tables, timed by the jobs' own plans, one beat per deployment (scheduling/beat.py).
CELERY_BEAT_SCHEDULER = "scheduling.beat:JobScheduler"
# The longest the beat sleeps: how soon it notices new and edited jobs (django-celery-beat's default is 5 s).
CELERY_BEAT_MAX_LOOP_INTERVAL = env_float("CELERY_BEAT_MAX_LOOP_INTERVAL", 1.0, minimum=0.1)
# A run more than this many seconds overdue (a stalled beat) is skipped, not caught up.
SCHEDULER_MISFIRE_GRACE = env_float("SCHEDULER_MISFIRE_GRACE", 30.0, minimum=1.0)
# The Celery queue jobs and async invocations go to (deployments sharing one broker use their own).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")

# --- Internationalisation ----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise expects it even when serving from finders
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve static files without a collectstatic step

# --- HTTPS and cookies ----------------------------------------------------------------------------
# HTTPS=true when the platform is reached over TLS (usually terminated at a load balancer
# that sets X-Forwarded-Proto); it turns on redirects, secure cookies and HSTS.

HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if env_bool("TRUST_X_FORWARDED_PROTO", HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers check health over plain HTTP to the server itself: /healthz answers, never redirects.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Management API ---------------------------------------------------------------------------------
# Scripts authenticate with API tokens; browsers with an admin session that passed the TOTP step.
# HTTP Basic with a user's password skips that step, so it is off unless asked for (`make run` turns
# it on for local development); when on, it is throttled like the admin login (accounts/api_auth.py).

MANAGE_API_BASIC_AUTH = env_bool("MANAGE_API_BASIC_AUTH", False)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api_auth.ApiTokenAuthentication",
        "accounts.api_auth.VerifiedSessionAuthentication",
        "accounts.api_auth.AdminBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["integration.permissions.IsPlatformAdmin"],
    "DEFAULT_PAGINATION_CLASS": "integration.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "integration.api_base.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # JSON within integration.jsonio's nesting and number limits (DRF's own parser lets deep nesting crash).
    "DEFAULT_PARSER_CLASSES": [
        "integration.jsonio.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard management API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Separate request and response components, so write-only fields (secrets) are not promised in answers.
    "COMPONENT_SPLIT_REQUEST": True,
    # Two connection kinds call a field auth_type with different choices: each enum gets its own name.
    "ENUM_NAME_OVERRIDES": {
        "OutgoingHttpAuthTypeEnum": "connections.models.OutgoingHttpBase.AuthType",
        "LdapAuthTypeEnum": "connections.directory_models.LdapConnection.AuthType",
    },
}

# --- Switchboard ---------------------------------------------------------------------------------------

# Services shipped with the platform, imported in every process. Each app keeps its built-in services in
# its `services` module (integration's in integration/services/, beside the Service API every deployed
# service imports); renaming one of these modules needs a data migration of its ServiceModule row.
BUILTIN_SERVICE_MODULES = [
    "integration.services.core", "integration.services.demo", "integration.services.websocket", "accounts.services",
    "scheduling.services",
]
# Python files dropped here are deployed in every process, with no restart.
PICKUP_DIR = env_path("PICKUP_DIR", BASE_DIR / "pickup")
PICKUP_WATCH = env_bool("PICKUP_WATCH", True)
# How often each process checks the configuration version and the pickup directory.
CONFIG_POLL_INTERVAL = env_float("CONFIG_POLL_INTERVAL", 0.25, minimum=0.05)
# Whether server and worker processes run that poller (off only for special cases such as tests).
CONFIG_POLLER = env_bool("CONFIG_POLLER", True)
# Seconds between writes of each process's invocation statistics (the dashboard's data) to the database.
METRICS_FLUSH_INTERVAL = env_float("METRICS_FLUSH_INTERVAL", 5.0, minimum=0.1)
# Days of per-minute invocation statistics kept; older rows are deleted (checked once an hour).
METRICS_RETENTION_DAYS = env_int("METRICS_RETENTION_DAYS", 7, minimum=1)
# Largest request body a REST channel accepts; larger ones get 413.
MAX_REQUEST_BODY = env_int("MAX_REQUEST_BODY", 10 * 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY
# Fernet keys for secrets at rest, newest first (MultiFernet: older keys still decrypt).
FERNET_KEYS = env_list("FERNET_KEYS")  # empty: accounts.crypto derives one key from SECRET_KEY
# Keys of the keyed hashes of API keys and API tokens, newest first (accounts/crypto.py). A hash names
# the key that made it, so a new key goes in front and older hashes are rewritten on their next use;
# after these comes one derived from SECRET_KEY (what every such hash was made with before).
HMAC_KEYS = [key.strip() for key in env_secret("HMAC_KEYS").split(",") if key.strip()]
if any(len(key) < 32 for key in HMAC_KEYS):
    raise ImproperlyConfiguredEnv("HMAC_KEYS: every key must be at least 32 characters (e.g. openssl rand -hex 32)")
# Brute-force limits on channel credentials, JWT log-ins, API tokens and /metrics (accounts/limits.py):
# after CREDENTIAL_MAX_FAILURES failures per (definition or user, client address) within
# CREDENTIAL_FAILURE_WINDOW seconds of the first, every attempt gets 429 until the window ends.
CREDENTIAL_MAX_FAILURES = env_int("CREDENTIAL_MAX_FAILURES", 10, minimum=1)
CREDENTIAL_FAILURE_WINDOW = env_int("CREDENTIAL_FAILURE_WINDOW", 300, minimum=1)
# Seconds a process trusts that a caller it just let through is not blocked before asking the shared
# count again (0: ask on every successful call).
CREDENTIAL_RECHECK = env_float("CREDENTIAL_RECHECK", 1.0, minimum=0.0)
# The bearer token Prometheus sends to /metrics; empty: only API tokens are accepted there.
METRICS_TOKEN = env_secret("METRICS_TOKEN")
ADMIN_PASSWORD = env_secret("ADMIN_PASSWORD")
# Every admin page needs a verified TOTP code as well as the password (`make run` turns it off).
ADMIN_REQUIRE_TOTP = env_bool("ADMIN_REQUIRE_TOTP", True)
# Failed admin log-ins allowed per hour, per username and per client address (progressive delays
# start after 3 failures in a row anyway; accounts/throttle.py).
ADMIN_LOGIN_MAX_FAILURES_PER_HOUR = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_HOUR", 100, minimum=1)
# Admin listings of tables PostgreSQL estimates at more rows than this show the planner's estimate
# ("about N") when unfiltered, instead of a COUNT(*) over the whole table (integration/admin_base.py).
ADMIN_EXACT_COUNT_LIMIT = env_int("ADMIN_EXACT_COUNT_LIMIT", 20_000, minimum=0)
# Behind a proxy that appends the client's address to X-Forwarded-For: throttle by its right-most entry.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
# Where JWT sessions (sliding expiry, revocation) live: Redis when there is one, else the database.
JWT_SESSION_STORE = env_str("JWT_SESSION_STORE", "redis" if REDIS_URL else "database")
if JWT_SESSION_STORE not in {"redis", "database"}:
    raise ImproperlyConfiguredEnv(f"JWT_SESSION_STORE must be redis or database, got {JWT_SESSION_STORE!r}")
if JWT_SESSION_STORE == "redis" and not REDIS_URL:
    raise ImproperlyConfiguredEnv("JWT_SESSION_STORE=redis needs REDIS_URL")
# Seconds a process trusts a JWT session it has just seen live before asking the store again.
JWT_SESSION_RECHECK = env_float("JWT_SESSION_RECHECK", 1.0, minimum=0.0)

# --- Serving HTTP (manage.py serve, and the production command in the README) ---------------------
# granian serves HTTP (admin, management API, REST channels) through config.wsgi: an asynchronous
# front end, so a slow or idle client holds a socket, never a Python thread. Options: serve.granian_argv.

# HTTP port of `manage.py serve` (which binds 127.0.0.1).
PORT = env_int("PORT", 8000, minimum=1)
# Web worker processes; in production one per core.
WEB_WORKERS = env_int("WEB_WORKERS", 2, minimum=1)
# Python threads per web worker that run requests. More let requests waiting on a backend or the
# database overlap; each may hold a database connection.
WEB_BLOCKING_THREADS = env_int("WEB_BLOCKING_THREADS", 4, minimum=1)
# Connections one web worker holds at once (granian's --backpressure); further clients wait in the
# listen backlog until one closes. Idle keep-alive and slow clients count, so keep it well above
# the connections real clients hold.
WEB_BACKPRESSURE = env_int("WEB_BACKPRESSURE", 1024, minimum=1)
# Seconds a client has to send a request's headers, which is also how long an idle keep-alive
# connection stays open; then the server closes it. granian accepts at most 60.
WEB_HEADER_READ_TIMEOUT = env_float("WEB_HEADER_READ_TIMEOUT", 10.0, minimum=0.001)
if WEB_HEADER_READ_TIMEOUT > 60:
    raise ImproperlyConfiguredEnv(f"WEB_HEADER_READ_TIMEOUT must be at most 60 seconds, got {WEB_HEADER_READ_TIMEOUT}")

# --- WebSocket channels and the channel layer ---------------------------------------------------------
# Pushes cross processes through the channel layer: Redis with REDIS_URL, otherwise an SQLite file in
# var/ that every local process shares (integration/channel_layers/). On Redis, groups and channels
# are namespaced by CHANNEL_LAYER_PREFIX, so deployments can share one Redis database.

CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "switchboard")
# Messages a connection's inbox holds before further pushes to it are dropped (a client that stopped reading).
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=1)
if REDIS_URL:
    # socket_timeout above channels-redis's 5 s BZPOPMIN: redis-py 8 defaults it to 5 s, so an idle receive
    # raised TimeoutError and killed a WebSocket connection every few seconds (django/channels_redis#422).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": CHANNEL_LAYER_CAPACITY,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "integration.channel_layers.SQLiteChannelLayer",
            "CONFIG": {"path": str(VAR_DIR / "channel-layer.sqlite3"), "capacity": CHANNEL_LAYER_CAPACITY},
        }
    }
# Seconds a push, a disconnect (the admin's action) or a connection joining its push groups waits for the
# channel layer before giving up with PushFailed (503; close 4503 for a connection) instead of holding a web
# worker or a WebSocket connection while Redis is down or paused. Also bounds the check that notices a layer
# that lost its group memberships (integration/channels/ws_groups.py).
PUSH_TIMEOUT = env_float("PUSH_TIMEOUT", 2.0, minimum=0.1)
# Origins (https://app.example.com, or a host name such as .example.com) whose pages may open WebSocket
# connections; `*` = any. Empty: pages served from ALLOWED_HOSTS only. Clients that send no Origin header
# (programs, not browsers) are always let through: nothing ambient authenticates them.
WEBSOCKET_ALLOWED_ORIGINS = env_list("WEBSOCKET_ALLOWED_ORIGINS")
# Threads per server process that run WebSocket requests (each may hold a database connection).
WEBSOCKET_THREADS = env_int("WEBSOCKET_THREADS", 16, minimum=1)
# Requests of one connection that may run at the same time; further ones wait for a free slot.
WEBSOCKET_MAX_CONCURRENT_REQUESTS = env_int("WEBSOCKET_MAX_CONCURRENT_REQUESTS", 8, minimum=1)
# Seconds between the updates each process makes of its connected clients' rows (last seen, counters).
WEBSOCKET_CLIENT_UPDATE_INTERVAL = env_float("WEBSOCKET_CLIENT_UPDATE_INTERVAL", 5.0, minimum=0.1)
# A client row not updated for this many intervals belongs to a process that died and counts as gone.
WEBSOCKET_CLIENT_STALE_FACTOR = env_int("WEBSOCKET_CLIENT_STALE_FACTOR", 3, minimum=2)

# --- Serving WebSockets (manage.py serve) ----------------------------------------------------------------
# granian keeps HTTP on PORT (WSGI: it serves REST several times faster); daphne serves WebSocket channels on
# WEBSOCKET_PORT. In production a load balancer sends WebSocket upgrades to daphne and the rest to granian.
WEBSOCKET_PORT = env_int("WEBSOCKET_PORT", PORT + 1, minimum=1)
# The WebSocket base URL browsers are given (scheme, host, port; no path), e.g. wss://switchboard.example.com.
# Empty: ws:// (wss:// with HTTPS) on the host the HTTP request named, at WEBSOCKET_PORT.
WEBSOCKET_PUBLIC_URL = env_str("WEBSOCKET_PUBLIC_URL", "").rstrip("/")
if WEBSOCKET_PUBLIC_URL and not WEBSOCKET_PUBLIC_URL.startswith(("ws://", "wss://")):
    raise ImproperlyConfiguredEnv(f"WEBSOCKET_PUBLIC_URL must start with ws:// or wss://, got {WEBSOCKET_PUBLIC_URL!r}")
# Daphne pings a connection silent for this many seconds and drops it when the pong is this late.
WEBSOCKET_PING_INTERVAL = env_int("WEBSOCKET_PING_INTERVAL", 20, minimum=1)
WEBSOCKET_PING_TIMEOUT = env_int("WEBSOCKET_PING_TIMEOUT", 30, minimum=1)
# Daphne closes a connection sending a bigger message (1009) before any channel sees it; serve raises it
# above the largest channel's max_message_size, so that channel limits answer with their own 4009.
WEBSOCKET_MAX_MESSAGE_SIZE = env_int("WEBSOCKET_MAX_MESSAGE_SIZE", 1024 * 1024, minimum=1024)
# Passwords of the demo's HTTP Basic Auth definitions (`manage.py bootstrap`); empty: generated, printed
# once and saved to var/demo-frontend-password and var/demo-backend-password.
DEMO_FRONTEND_PASSWORD = env_secret("DEMO_FRONTEND_PASSWORD")
DEMO_BACKEND_PASSWORD = env_secret("DEMO_BACKEND_PASSWORD")

# --- Logging -----------------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfiguredEnv(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
    },
}
