"""gunicorn settings for Switchboard's HTTP processes (``gunicorn -c config/gunicorn.conf.py``)."""

import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "sync"
preload_app = True  # import Django and build the snapshot once, before forking
accesslog = None
graceful_timeout = 10
timeout = 60


def post_fork(server, worker):
    # Threads do not survive fork: each worker starts its own configuration poller.
    from integration import snapshot

    snapshot.ensure_poller()
