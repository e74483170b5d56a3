"""Resolve a channel's security definition to a ready authenticator, from the snapshot.

``AUTHENTICATORS`` maps each definition type to its DRF authentication class; a new type
is one model, one class and one line here. ``SecurityTable.build`` reads every definition
once per configuration version.
"""

from __future__ import annotations

import logging

from django.apps import apps

from accounts.authentication import (
    ApiKeyAuthentication,
    BasicAuthDefinitionAuthentication,
    DefinitionAuthentication,
    JWTAuthentication,
    TechAccountAuthentication,
    VaultAuthentication,
)

logger = logging.getLogger(__name__)

AUTHENTICATORS: dict[str, type[DefinitionAuthentication]] = {
    cls.sec_type: cls
    for cls in (
        BasicAuthDefinitionAuthentication,
        TechAccountAuthentication,
        ApiKeyAuthentication,
        JWTAuthentication,
        VaultAuthentication,
    )
}


class SecurityTable:
    """Definition id -> authenticator, built once per configuration version."""

    def __init__(self, by_id: dict[int, DefinitionAuthentication]) -> None:
        self.by_id = by_id

    @classmethod
    def build(cls) -> SecurityTable:
        by_id: dict[int, DefinitionAuthentication] = {}
        for auth_cls in AUTHENTICATORS.values():
            for definition in apps.get_model(auth_cls.model).objects.all():
                try:
                    by_id[definition.pk] = auth_cls.from_definition(definition)
                except Exception:
                    # One broken definition (a secret that no key decrypts, say) must not take
                    # every channel down: its own channels fail closed (401), the rest work.
                    logger.exception("Security definition `%s` cannot be loaded; its channels refuse every caller",
                                     definition.name)
        return cls(by_id)

    def get(self, definition_id: int | None) -> DefinitionAuthentication | None:
        if definition_id is None:
            return None
        return self.by_id.get(definition_id)

    def by_name(self, name: str) -> DefinitionAuthentication | None:
        for authenticator in self.by_id.values():
            if authenticator.name == name:
                return authenticator
        return None

    def __len__(self) -> int:
        return len(self.by_id)
