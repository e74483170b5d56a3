"""Built-in security services.

``zato.security.jwt.create-token`` makes a JWT token on behalf of a JWT definition's
account without its password, so a trusted frontend can hand a browser a session without
relaying credentials (the seed on JWT and WebSockets). Whoever can invoke it can act as
any JWT account: expose it only on a channel secured for that frontend.
"""

from __future__ import annotations

from accounts.authentication import JWTAuthentication
from integration import snapshot
from integration.errors import BadRequest, NotFound, ServiceUnavailable
from integration.services import Service


class CreateJWTToken(Service):
    """Input ``definition`` (a JWT definition's name) or ``username``; output ``{"token", "ttl", "username"}``."""

    name = "zato.security.jwt.create-token"

    def handle(self) -> None:
        from accounts import tokens

        data = self.request.payload if isinstance(self.request.payload, dict) else {}
        definition_name, username = data.get("definition"), data.get("username")
        if not (isinstance(definition_name, str) or isinstance(username, str)):
            raise BadRequest("Give `definition` (a JWT definition's name) or `username`")
        authenticator = find_jwt(definition_name, username)
        if authenticator is None or not authenticator.is_active:
            raise NotFound("No active JWT definition matches")
        try:
            token = tokens.issue(authenticator.definition_id, authenticator.username, authenticator.ttl)
        except tokens.SessionStoreUnavailable as exc:
            self.logger.error("JWT session store unavailable: %s", exc)
            raise ServiceUnavailable("Tokens cannot be issued right now; try again later") from None
        self.logger.info("JWT token issued on behalf of `%s` (definition `%s`)", authenticator.username,
                         authenticator.name)
        self.response.payload = {"token": token, "ttl": authenticator.ttl, "username": authenticator.username}


def find_jwt(definition_name: str | None = None, username: str | None = None) -> JWTAuthentication | None:
    """The JWT authenticator with this definition name or username, from the snapshot (no query)."""
    for authenticator in snapshot.current().security.by_id.values():
        if not isinstance(authenticator, JWTAuthentication):
            continue
        if definition_name is not None and authenticator.name == definition_name:
            return authenticator
        if definition_name is None and username is not None and authenticator.username == username:
            return authenticator
    return None
