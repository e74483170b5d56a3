"""Resolve a channel's security definition to a ready authenticator, from the snapshot.

``AUTHENTICATORS`` maps each definition type to its DRF authentication class; a new type
is one model, one class and one line here. ``SecurityTable.build`` reads every definition
once per configuration version.
"""

from __future__ import annotations

from accounts.authentication import BasicAuthDefinitionAuthentication, DefinitionAuthentication

AUTHENTICATORS: dict[str, type[DefinitionAuthentication]] = {
    BasicAuthDefinitionAuthentication.sec_type: BasicAuthDefinitionAuthentication,
}


class SecurityTable:
    """Definition id -> authenticator, built once per configuration version."""

    def __init__(self, by_id: dict[int, DefinitionAuthentication]) -> None:
        self.by_id = by_id

    @classmethod
    def build(cls) -> SecurityTable:
        from accounts.models import BasicAuth

        by_id: dict[int, DefinitionAuthentication] = {}
        for model in (BasicAuth,):
            for definition in model.objects.all():
                auth_cls = AUTHENTICATORS[definition.sec_type]
                by_id[definition.pk] = auth_cls.from_definition(definition)
        return cls(by_id)

    def get(self, definition_id: int | None) -> DefinitionAuthentication | None:
        if definition_id is None:
            return None
        return self.by_id.get(definition_id)

    def __len__(self) -> int:
        return len(self.by_id)

