"""Throttling of admin log-ins, counted from the audit list (``LoginAttempt``).

The same rules apply to management API log-ins with a user's password (HTTP Basic, when
``MANAGE_API_BASIC_AUTH`` is on; ``accounts.api_auth``): both kinds of attempt check the same
password, so they count together. Channel credentials, JWT log-ins and API tokens have their
own limits (``accounts.limits``), which this module's ``client_address`` also serves.

Short TOTP codes make rate limiting doubly important (the seed on TOTP); Zato leaves it to the
load balancer, Switchboard does it itself. Failures are counted per username and per client
address, from the database, so every process on every machine sees the same counts, the
embedded SQLite setup included. Within the last hour:

* at most ``ADMIN_LOGIN_MAX_FAILURES_PER_HOUR`` failures (default 100) per username and per
  address; beyond that, attempts are refused until the oldest failure is an hour old;
* after ``FREE_FAILURES`` failures in a row (since the last success), each further attempt
  waits 2^(n - FREE_FAILURES) seconds after the last failure, up to ``MAX_DELAY``.

A refused attempt is answered at once with the time to wait, never by sleeping (a sleeping
worker would be a denial of service). Refused attempts are recorded but do not count as
failures, so a client that keeps knocking does not lengthen its own wait forever.

An attempt is recorded as a failure *before* the check and turned into a success afterwards
("pessimistic recording"): requests running in parallel count each other, so a burst of
concurrent guesses is throttled like a sequence of them.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.signals import setting_changed
from django.db.models import Count, Max, Q
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import LoginAttempt

logger = logging.getLogger("accounts.login")

WINDOW = timedelta(hours=1)
FREE_FAILURES = 3
MAX_DELAY = 15 * 60
IN_PROGRESS = "in progress"

Stage = LoginAttempt.Stage
Outcome = LoginAttempt.Outcome
Kind = LoginAttempt.Kind
# The attempts that check a user's own password, and so count against each other.
PASSWORD_KINDS = (Kind.ADMIN, Kind.API)


def clock() -> float:
    """Unix time; tests replace it to move time without sleeping."""
    return time.time()


def now() -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the right-most X-Forwarded-For entry when TRUST_X_FORWARDED_FOR is on.

    The right-most entry is the one the trusted proxy added; anything left of it came from the
    client and can be forged.
    """
    meta = request.META
    trust = _trust_forwarded_for
    if trust is None:
        trust = _read_trust()
    if trust:
        entries = [entry.strip() for entry in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        entries = [entry for entry in entries if entry]
        if entries:
            return entries[-1][:ADDRESS_LENGTH]
    address = meta.get("REMOTE_ADDR")
    if address.__class__ is str and len(address) <= ADDRESS_LENGTH:  # the usual case, on every credential check
        return address
    return str(address or "")[:ADDRESS_LENGTH]


ADDRESS_LENGTH = LoginAttempt.ADDRESS_LENGTH
_trust_forwarded_for: bool | None = None  # TRUST_X_FORWARDED_FOR, read once: settings access costs per request


def _read_trust() -> bool:
    global _trust_forwarded_for
    _trust_forwarded_for = bool(settings.TRUST_X_FORWARDED_FOR)
    return _trust_forwarded_for


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: object) -> None:
    global _trust_forwarded_for
    if setting == "TRUST_X_FORWARDED_FOR":
        _trust_forwarded_for = None


def begin(request: HttpRequest, username: str, kind: str = Kind.ADMIN) -> LoginAttempt:
    """Record an attempt as a failure in progress (see the module docstring for why first)."""
    return LoginAttempt.objects.create(
        when=now(),
        kind=kind,
        username=username[: LoginAttempt.USERNAME_LENGTH],
        address=client_address(request),
        user_agent=str(request.META.get("HTTP_USER_AGENT", ""))[: LoginAttempt.USER_AGENT_LENGTH],
        stage=Stage.PASSWORD,
        outcome=Outcome.FAILURE,
        reason=IN_PROGRESS,
    )


def finish(attempt: LoginAttempt, outcome: str, reason: str = "", *, stage: str | None = None,
           user: Any = None) -> None:
    """Record how an attempt ended."""
    attempt.outcome = outcome
    attempt.reason = reason
    attempt.stage = stage or attempt.stage
    attempt.user = user
    attempt.save(update_fields=["outcome", "reason", "stage", "user"])
    if outcome != Outcome.SUCCESS:
        logger.warning("%s %s for %r from %s at the %s step: %s", attempt.get_kind_display(),
                       outcome, attempt.username, attempt.address, attempt.stage, reason)


def user_named(username: str) -> Any:
    """The account a (wrong) username belongs to, for the audit list; None when there is none."""
    model = get_user_model()
    return model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()


def wait_seconds(attempt: LoginAttempt) -> int:
    """Seconds before this attempt's username and address may try again; 0 = go ahead."""
    return wait_for(attempt.username, attempt.address, attempt.when, attempt.pk)


def wait_for(username: str, address: str, at: datetime | None = None, own_pk: int | None = None) -> int:
    """Seconds before ``username`` and ``address`` may try their password again; 0 = go ahead."""
    at = at or now()
    waits = [0.0]
    if username:
        waits.append(_wait(Q(username=username[: LoginAttempt.USERNAME_LENGTH]), at, own_pk))
    if address:
        waits.append(_wait(Q(address=address), at, own_pk))
    return math.ceil(max(waits))


def _wait(key: Q, at: datetime, own_pk: int | None) -> float:
    """The wait imposed by the recent attempts matching ``key`` (one username or one address)."""
    recent = LoginAttempt.objects.filter(
        key, kind__in=PASSWORD_KINDS, when__gt=at - WINDOW, outcome__in=[Outcome.SUCCESS, Outcome.FAILURE],
    )
    if own_pk is not None:
        recent = recent.exclude(pk=own_pk)
    failed = recent.filter(outcome=Outcome.FAILURE)
    summary = recent.aggregate(
        failures=Count("pk", filter=Q(outcome=Outcome.FAILURE)),
        last_success=Max("pk", filter=Q(outcome=Outcome.SUCCESS)),
        last_failure=Max("when", filter=Q(outcome=Outcome.FAILURE)),
    )
    failures = summary["failures"]
    if not failures:
        return 0.0
    wait = 0.0
    cap = settings.ADMIN_LOGIN_MAX_FAILURES_PER_HOUR
    if failures >= cap:
        # Allowed again once enough failures have left the window to be under the cap.
        leaving = failed.order_by("when").values_list("when", flat=True)[failures - cap]
        wait = (leaving + WINDOW - at).total_seconds()
    # "Since the last success" in the order attempts began (ids), not by clock, which can tie.
    last_success = summary["last_success"]
    in_a_row = failures if last_success is None else failed.filter(pk__gt=last_success).count()
    if in_a_row >= FREE_FAILURES:
        delay = min(2 ** (in_a_row - FREE_FAILURES), MAX_DELAY)
        wait = max(wait, (summary["last_failure"] - at).total_seconds() + delay)
    return wait


def message(seconds: int) -> str:
    unit = "second" if seconds == 1 else "seconds"
    return f"Too many failed attempts; try again in {seconds} {unit}."
