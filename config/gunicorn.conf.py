"""gunicorn settings for Switchboard's HTTP processes (``gunicorn -c config/gunicorn.conf.py``)."""

import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "sync"
preload_app = True  # import Django and build the snapshot once, before forking
accesslog = None
graceful_timeout = 10
timeout = 60
# gunicorn's control socket defaults to one path per user, which every gunicorn on the
# machine (make run, tests, benchmarks) would take over from the others: keep it per VAR_DIR.
control_socket = os.path.join(os.environ.get("VAR_DIR", "var"), "gunicorn.ctl")


def post_fork(server, worker):
    # Threads do not survive fork: each worker starts its own configuration poller.
    from integration import snapshot

    snapshot.ensure_poller()
