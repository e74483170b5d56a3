"""gunicorn settings for the benchmarks' baseline: the sync-worker setup the platform used before granian.

2 sync workers by default (``WEB_WORKERS``), the application imported once before forking
(``preload_app``), no access log, on 127.0.0.1 at ``PORT``. Each worker checks the
configuration version before its first request and starts its own poller there
(``WSGIApplication`` calls ``poller.ensure_poller``), so no ``post_fork`` hook is needed
and a bare WSGI app can be served by the very same setup.
"""

import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "sync"
preload_app = True
accesslog = None
graceful_timeout = 10
timeout = 60
# gunicorn's control socket defaults to one path per user, which every gunicorn on the machine
# would take over from the others: keep it per VAR_DIR.
control_socket = os.path.join(os.environ.get("VAR_DIR", "var"), "gunicorn.ctl")
