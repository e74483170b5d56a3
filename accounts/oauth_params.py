"""Parsers for an OAuth definition's text fields: scopes and extra token parameters.

Kept apart from ``accounts.oauth`` (the token client) so that models can use them without
pulling in the HTTP client, and so that each has a Hypothesis test of its own.
"""

from __future__ import annotations

RESERVED_TOKEN_PARAMS = frozenset({"grant_type", "scope", "client_id", "client_secret"})
MAX_SCOPE_LENGTH = 200


def parse_scopes(text: str) -> list[str]:
    """Scopes separated by spaces, commas or new lines; duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for scope in (text or "").replace(",", " ").split():
        seen.setdefault(scope, None)
    return list(seen)


def parse_extra_params(text: str) -> dict[str, str]:
    """``key=value`` lines (``;`` separates too, as in Zato); ``ValueError`` naming the bad line."""
    params: dict[str, str] = {}
    for raw in (text or "").replace(";", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Write each parameter as key=value: {line[:80]!r} is not.")
        if key in RESERVED_TOKEN_PARAMS:
            raise ValueError(f"{key} is set by Switchboard itself, not by extra parameters.")
        params[key] = value.strip()
    return params
