"""``python manage.py watch_files``: watch every active file channel's directory until stopped.

Long-lived; ``manage.py serve`` starts one. Several may run, on one machine or many, over
the same directories (a shared file system): each version of each file is processed once,
by whichever process claims it first in the database. SIGTERM or Ctrl-C stops it after the
files being processed are finished and put away.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Watch the file channels' directories and invoke their services, until interrupted."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workers", type=int, default=None, help="Files processed at once (FILE_WORKERS).")
        parser.add_argument("--rescan-interval", type=float, default=None,
                            help="Seconds between full directory scans (FILE_RESCAN_INTERVAL).")

    def handle(self, *args: Any, workers: int | None = None, rescan_interval: float | None = None,
               **options: Any) -> None:
        from integration.channels.file_watcher import FileWatcher

        logging.getLogger("integration.files").setLevel(logging.INFO)
        watcher = FileWatcher(workers=workers, rescan_interval=rescan_interval)

        def stop(signum: int, frame: Any) -> None:
            watcher.stop_event.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"Watching file channels ({watcher.owner}); Ctrl-C stops.")
        self.stdout.flush()
        watcher.run()
        self.stdout.write("File watcher stopped.")
