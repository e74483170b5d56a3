"""``manage.py api_token create|list|revoke``: management API tokens for scripts and automation.

* ``create USER [--name NAME] [--expires-in DAYS] [--read-only]`` makes a token acting as USER
  (an active staff user) and prints it on stdout, alone on its line, so a script can capture it
  (``TOKEN=$(python manage.py api_token create ci --name deploy)``); what it is goes to stderr.
  It is shown this once: only its prefix and a keyed hash are stored. ``--expires-in`` defaults
  to ``DEFAULT_DAYS``; ``--expires-in 0`` makes a token that never expires.
* ``list [USER]`` shows tokens (prefix, user, name, read-only, created, expires, last used, status).
* ``revoke PREFIX_OR_ID`` revokes one token at once, in every process; ``revoke --user USER`` all of
  a user's tokens.

Whoever can run ``manage.py`` can read the database anyway; the admin's API tokens page is the way
for a user who only has the admin (behind its TOTP login).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from accounts.models import API_TOKEN_DEFAULT_DAYS as DEFAULT_DAYS
from accounts.models import API_TOKEN_LOOKUP_LENGTH, ApiToken
from accounts.models import API_TOKEN_MAX_DAYS as MAX_DAYS


class Command(BaseCommand):
    help = "Create, list or revoke management API tokens (sent as `Authorization: Token <token>`)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = sub.add_parser("create", help="Make a token for USER and print it (shown once).")
        create.add_argument("username", help="The active staff user the token acts as.")
        create.add_argument("--name", default="", help="What the token is for (a script, a CI job).")
        create.add_argument("--expires-in", type=int, default=DEFAULT_DAYS, metavar="DAYS",
                            help=f"Days until it stops working (default {DEFAULT_DAYS}; 0 = never).")
        create.add_argument("--read-only", action="store_true",
                            help="Only reads: writes, deployments, invocations and job runs get 403.")
        listing = sub.add_parser("list", help="List tokens, of one user or of all.")
        listing.add_argument("username", nargs="?", help="Only this user's tokens.")
        revoke = sub.add_parser("revoke", help="Revoke a token (by prefix or id), or all of a user's.")
        revoke.add_argument("token", nargs="?", help="The token's prefix (sbt_...) or id, as `list` shows.")
        revoke.add_argument("--user", dest="revoke_user", help="Revoke every token of this user.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            self.create(options["username"], options["name"], options["expires_in"], options["read_only"])
        elif action == "list":
            self.list(options.get("username"))
        else:
            self.revoke(options.get("token"), options.get("revoke_user"))

    def create(self, username: str, name: str, days: int, read_only: bool) -> None:
        user = _user(username)
        if not (user.is_active and user.is_staff):
            raise CommandError(f"{username} is not an active staff user; the management API would refuse the token.")
        if not 0 <= days <= MAX_DAYS:
            raise CommandError(f"--expires-in must be 0 (never) to {MAX_DAYS} days.")
        if len(name) > ApiToken._meta.get_field("name").max_length:
            raise CommandError("--name is too long (at most 100 characters).")
        row, token = ApiToken.issue(user, name=name.strip(), days=days or None, read_only=read_only)
        self.stdout.write(token)
        expiry = f"expires {row.expires:%Y-%m-%d %H:%M} UTC" if row.expires else "never expires"
        self.stderr.write(f"API token {row.prefix}... for {username} ({'read-only, ' if read_only else ''}{expiry}). "
                          "It is shown only now; send it as `Authorization: Token <token>`.")

    def list(self, username: str | None) -> None:
        tokens: QuerySet[ApiToken] = ApiToken.objects.select_related("user").order_by("user__username", "-created")
        if username:
            tokens = tokens.filter(user=_user(username))
        rows = [("id", "prefix", "user", "name", "access", "created", "expires", "last used", "status")]
        for token in tokens:
            rows.append((str(token.pk), token.prefix, token.user.get_username(), token.name or "-",
                         "read-only" if token.read_only else "read-write", _when(token.created),
                         _when(token.expires, "never"), _when(token.last_used, "never"), token.status))
        if len(rows) == 1:
            self.stdout.write("No API tokens.")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def revoke(self, token: str | None, username: str | None) -> None:
        if (token is None) == (username is None):
            raise CommandError("Name one token (its prefix or id) or give --user USER, not both.")
        if username is not None:
            rows = list(ApiToken.objects.filter(user=_user(username), revoked__isnull=True))
        else:
            found = ApiToken.objects.filter(pk=int(token)) if token.isdigit() else ApiToken.objects.filter(
                prefix=token.rstrip(".")[:API_TOKEN_LOOKUP_LENGTH])
            rows = list(found)
            if not rows:
                raise CommandError(f"No API token {token!r}; `api_token list` shows them.")
        revoked = [row.prefix for row in rows if row.revoke()]
        if revoked:
            self.stdout.write(f"Revoked: {', '.join(revoked)}")
        else:
            self.stdout.write("Nothing to revoke (already revoked).")


def _user(username: str) -> Any:
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(f"No user {username!r}.") from None


def _when(value: Any, empty: str = "-") -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else empty
