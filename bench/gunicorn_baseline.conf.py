"""gunicorn settings for the baseline apps: config/gunicorn.conf.py's values without its hook.

The same bind, worker count, worker class, preloading and timeouts as the platform's
server; only ``post_fork`` (which starts Switchboard's configuration poller and needs
Django) is left out, so a bare WSGI app can be served by the very same gunicorn setup.
"""

import runpy
from pathlib import Path

_platform = runpy.run_path(str(Path(__file__).resolve().parent.parent / "config" / "gunicorn.conf.py"))

bind = _platform["bind"]
workers = _platform["workers"]
worker_class = _platform["worker_class"]
preload_app = _platform["preload_app"]
accesslog = _platform["accesslog"]
graceful_timeout = _platform["graceful_timeout"]
timeout = _platform["timeout"]
