"""Builders for security definitions with known secrets, and a controlled clock for token expiry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts import tokens
from accounts.models import ApiKey, JWTDefinition, TechAccount
from tests.conftest import Clock


@pytest.fixture
def tech_account(db: None) -> Callable[..., TechAccount]:
    def _make(name: str = "myusername", password: str | None = "mypassword", **fields: Any) -> TechAccount:
        definition = TechAccount(name=name, **fields)
        if password is not None:
            definition.set_password(password)
        definition.save()
        return definition

    return _make


@pytest.fixture
def api_key(db: None) -> Callable[..., tuple[ApiKey, str]]:
    """``api_key(name, header=...)`` -> (definition, the key in clear)."""

    def _make(name: str = "partner-key", **fields: Any) -> tuple[ApiKey, str]:
        definition = ApiKey(name=name, **fields)
        key = definition.new_key()
        definition.save()
        return definition, key

    return _make


@pytest.fixture
def jwt_def(db: None) -> Callable[..., JWTDefinition]:
    def _make(name: str = "browsers", username: str = "frontend", password: str = "jwt-secret-1", ttl: int = 60,
              **fields: Any) -> JWTDefinition:
        definition = JWTDefinition(name=name, username=username, ttl=ttl, **fields)
        definition.set_password(password)
        definition.save()
        return definition

    return _make


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_900_000_000.0)
    monkeypatch.setattr(tokens, "clock", fake)
    return fake


@pytest.fixture(params=["redis", "database"])
def session_store(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run a test against both JWT session stores (Redis when configured, the database otherwise)."""
    if request.param == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.JWT_SESSION_STORE = request.param
    return request.param
