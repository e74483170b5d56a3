"""``python manage.py consume_amqp``: consume every active AMQP channel until stopped.

Long-lived; ``manage.py serve`` starts one. Several may run (one machine or many): the broker
shares each queue's messages among all their consumers. SIGTERM or Ctrl-C stops it after the
messages being processed are finished and acknowledged; one the process could not finish
(killed) goes back to the queue, to another consumer.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Consume the AMQP channels' queues and invoke their services, until interrupted."

    def handle(self, *args: Any, **options: Any) -> None:
        from integration.channels.amqp import AMQPConsumers

        logging.getLogger("integration.amqp").setLevel(logging.INFO)
        consumers = AMQPConsumers()

        def stop(signum: int, frame: Any) -> None:
            consumers.stop_event.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write("Consuming AMQP channels; Ctrl-C stops.")
        self.stdout.flush()
        consumers.run()
        self.stdout.write("AMQP consumer stopped.")
