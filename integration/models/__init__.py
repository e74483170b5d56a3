"""Configuration of the service runtime: deployed code, channels of every kind and the version counter.

Every write to these models (and to the security definitions in ``accounts``) bumps
``ConfigVersion`` in the same transaction; each process compares the version with the one
its compiled snapshot was built from and rebuilds when they differ (``integration.snapshot``).

One module per concern (``base``, ``core``, ``websocket``, ``files``, ``amqp``); every model is
imported here, so ``from integration.models import RestChannel`` works as before.
"""

from __future__ import annotations

from integration.models.amqp import (  # noqa: F401
    AMQPChannel,
)
from integration.models.base import (  # noqa: F401
    MAX_LIMIT,
    RESERVED_PREFIXES,
    CleanOnSave,
    ConfigVersion,
    path_problem,
    reserved_prefix,
    security_problem,
)
from integration.models.core import (  # noqa: F401
    DeployedService,
    InvocationStat,
    RestChannel,
    ServiceModule,
)
from integration.models.files import (  # noqa: F401
    AfterAction,
    FileChannel,
    FileClaim,
)
from integration.models.websocket import (  # noqa: F401
    MAX_WEBSOCKET_MESSAGE_SIZE,
    WebSocketChannel,
    WebSocketClient,
    WebSocketClientQuerySet,
    websocket_client_stale_after,
)
