"""Channel types: the contract every kind of channel meets, and their registry.

A *channel type* (REST, WebSocket; file and AMQP next) is registered by the app that owns it
in ``AppConfig.ready()``. Each says what it compiles into the configuration snapshot: its
``build(context)`` reads its rows once per configuration version and returns a table the
kind's server looks its channels up in (no queries per request). The snapshot holds one
table per registered type, under the type's name (``snap.channels["rest"]``), and names
none of them itself. A type's admin pages and API resources are registered by its app as
any other (``admin.py``, ``integration.api_routes``).

A channel whose security definition cannot be used (its type is no longer registered, or
not allowed for the channel's kind, or it failed to load) is compiled all the same, with
``security_problem`` saying why: that channel answers 503 with the CID, the others work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from integration.channels import security

if TYPE_CHECKING:
    from integration.channels.security import Authenticator, SecurityTable
    from integration.registry import Registry


@dataclass(frozen=True)
class BuildContext:
    """What a channel type's ``build`` may use: the services and the security definitions of the version."""

    registry: Registry
    security: SecurityTable
    outgoing: Any = None

    def authenticator(self, kind: str, definition_id: int | None, sec_type: str | None,
                      ) -> tuple[Authenticator | None, str]:
        """The compiled definition for a channel of ``kind``, and why it cannot be used ("" when it can)."""
        if definition_id is None:
            return None, ""
        problem = security.problem(sec_type, kind)
        if problem:
            return None, problem
        authenticator = self.security.get(definition_id)
        if authenticator is None:
            return None, "Its security definition cannot be loaded"
        return authenticator, ""


class ChannelType:
    """One kind of channel. ``name`` keys its table in the snapshot; ``build`` compiles its rows."""

    name: str = ""
    label: str = ""

    def build(self, context: BuildContext) -> Any:
        raise NotImplementedError


_types: dict[str, ChannelType] = {}


def register(channel_type: ChannelType) -> ChannelType:
    if not channel_type.name:
        raise ImproperlyConfigured(f"{type(channel_type).__name__} has no name")
    if channel_type.name in _types:
        raise ImproperlyConfigured(f"Channel type `{channel_type.name}` is registered twice")
    _types[channel_type.name] = channel_type
    return channel_type


def types() -> list[ChannelType]:
    return list(_types.values())
