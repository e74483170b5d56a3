"""The compiled forms of the test plug-in's rows, meeting the contracts of the two registries."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from connections.base import Connection, PingResult
from integration.channels.security import Authenticator, CallerIdentity, CredentialsRefused

HEADER = "HTTP_X_SHOUT"


class ShoutAuthentication(Authenticator):
    sec_type = "shout"

    def __init__(self, name: str, is_active: bool, word: str) -> None:
        self.name, self.is_active, self.word = name, is_active, word

    @classmethod
    def from_definition(cls, definition: Any) -> ShoutAuthentication:
        return cls(definition.name, definition.is_active, definition.word)

    def authenticate(self, request: Any) -> tuple[CallerIdentity, str] | None:
        shouted = request.META.get(HEADER)
        if shouted is None:
            return None
        if not self.is_active or not hmac.compare_digest(shouted.encode(), self.word.encode()):
            raise CredentialsRefused("Shout louder", reason="wrong word")
        return CallerIdentity("shouter", self.name, self.sec_type), self.name

    def authenticate_header(self, request: Any) -> str:
        return "shout"

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return HEADER in meta

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        if not token:
            raise CredentialsRefused("This channel expects the word as the token")
        return {HEADER: token}


class EchoClient(Connection):
    kind = "echo"

    def __init__(self, name: str, is_active: bool, prefix: str) -> None:
        self.name, self.is_active, self.prefix = name, is_active, prefix
        self.closed = False

    @classmethod
    def from_definition(cls, row: Any) -> EchoClient:
        return cls(row.name, row.is_active, row.prefix)

    def call(self, text: str) -> str:
        return self.prefix + text

    def ping(self) -> PingResult:
        return PingResult(True, 0.0, "echo is always there")

    def close(self) -> None:
        self.closed = True
