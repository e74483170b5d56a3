"""Correlation ids: one per request, invocation, push or job, in every log line and error body."""

from __future__ import annotations

import secrets


def new_cid() -> str:
    """A correlation id: 96 random bits as 24 lowercase hex characters."""
    return secrets.token_hex(12)
