"""Settings for the REST throughput benchmark: the platform's, plus the bench-only URLs."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
