"""Authenticate channel callers against Vault: the inbound half of Vault security definitions.

``VaultGate`` is built once per configuration snapshot from a ``VaultConnection`` row
(``from_definition``, which never contacts Vault) and owns one ``hvac.Client``. For each
request ``login()`` finds the caller's credentials in Zato's headers, decides the method
(a chooser service, else the definition's default method, else token, then
username/password, then GitHub) and asks Vault:

* ``token``: the presented token is looked up (``auth/token/lookup`` with Switchboard's
  own token; a definition without one lets the token look itself up, ``lookup-self``);
* ``username-password``: Vault's userpass login, at the definition's mount point or the
  one the caller names in ``X-Zato-Vault-Mount-Point``;
* ``github``: Vault's GitHub login with the caller's GitHub token.

Logins never replace the client's own token (``use_token=False``): one client serves
every caller. The outcome is one of three: a ``VaultLogin``, ``VaultDenied`` (Vault said
no, or the credentials were malformed: 401), ``VaultUnavailable`` (Vault could not be
asked or gave no usable answer: 503). Nothing lets a caller through when Vault cannot
vouch for them. Successful logins are remembered for ``cache_ttl`` seconds under a keyed hash
(BLAKE2b) of the credentials, never the credentials themselves; failures are never remembered.

**The cache-hit path** is most of a busy channel's calls, so it is kept to reading the
headers, one keyed hash and one dict lookup: without a chooser, entries are keyed by the Vault
headers as sent, which decide the credentials, so a hit skips reading and checking them
(the values were checked when the entry was made; failures make none). When an entry
expires, the first caller with those credentials asks Vault and the others arriving
meanwhile wait for its answer (at most the definition's ``timeout``) instead of each
asking too: with dozens of threads per process, every expiry used to send a burst of
identical logins. A waiter whose leader was refused, or failed, asks Vault itself: a
failure is never handed on, as it is never cached.

Exception messages go to the server log: they say precisely what failed and never
contain a token or a password.

A chooser service (the definition's ``service_name``) is invoked in-process with
``{"sec_def": <definition name>, "body": <request body as text>, "headers": {<HTTP name,
e.g. X-Zato-Vault-Token or Authorization>: <value>, ...}}`` and answers
``{"method": "token" | "username-password" | "github", "headers": {...}}``, where the
headers carry the credentials under Zato's header names, in HTTP form
(``X-Zato-Vault-Username``) or WSGI form (``HTTP_X_ZATO_VAULT_USERNAME``). A chooser
that fails, or answers anything else, denies the caller.

``VaultAuthentication`` is the security type (``vault_conn_sec``) that REST and WebSocket
channels use through ``integration.channels.security``; the chooser service is invoked through
the function the channel hands over (``request.call_service``). The client half (settings,
TLS files, ping, ``self.out.vault``) is ``connections.vault``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions
import requests
from django.core.exceptions import RequestDataTooBig

from accounts import crypto, limits
from accounts.authentication import DefinitionAuthentication
from connections import http_common, vault
from connections.base import PingResult
from connections.vault import ClientSettings
from integration import jsonio
from integration.channels.security import CallerIdentity, CredentialsRefused, wsgi
from integration.errors import PayloadTooLarge, ServiceUnavailable, SwitchboardError
from integration.services import ChannelInfo

if TYPE_CHECKING:
    from connections.models import VaultConnection

logger = logging.getLogger(__name__)

ServiceCaller = Callable[..., Any]  # integration.invoke.call_service: (name, payload, *, cid, channel) -> result

# Method ids and header names, not secrets (hence the noqa for ruff's hardcoded-password check).
TOKEN = "token"  # noqa: S105
USERNAME_PASSWORD = "username-password"  # noqa: S105
GITHUB = "github"
METHODS = (TOKEN, USERNAME_PASSWORD, GITHUB)

# Zato's request headers, as WSGI environ keys.
TOKEN_HEADER = "HTTP_X_ZATO_VAULT_TOKEN"  # noqa: S105
GITHUB_HEADER = "HTTP_X_ZATO_VAULT_TOKEN_GITHUB"
USERNAME_HEADER = "HTTP_X_ZATO_VAULT_USERNAME"
PASSWORD_HEADER = "HTTP_X_ZATO_VAULT_PASSWORD"  # noqa: S105
MOUNT_POINT_HEADER = "HTTP_X_ZATO_VAULT_MOUNT_POINT"
VAULT_HEADERS = (TOKEN_HEADER, GITHUB_HEADER, USERNAME_HEADER, PASSWORD_HEADER, MOUNT_POINT_HEADER)
_NO_VALUES = ("",) * len(VAULT_HEADERS)  # meta.get's default for each of them

MAX_VALUE_LENGTH = 8192
# Userpass puts the username in the URL path (/v1/auth/<mount>/login/<username>): nothing
# that could leave that path segment ('/', '?', '#', '%', '..') gets through.
_USERNAME = re.compile(r"^[A-Za-z0-9._@+=,~-]{1,256}$")
# Vault tokens and GitHub tokens are printable ASCII without spaces.
_TOKEN = re.compile(rf"^[\x21-\x7e]{{1,{MAX_VALUE_LENGTH}}}$")


class VaultDenied(Exception):
    """Vault refused the caller, or the caller's credentials were malformed (a 401)."""


class VaultUnavailable(Exception):
    """Vault could not be asked, or gave no usable answer: the caller must not be let through (a 503)."""


@dataclass(frozen=True)
class VaultLogin:
    """A caller Vault vouched for."""

    username: str
    method: str
    client_token: str
    lease_duration: int | None
    policies: tuple[str, ...]


@dataclass(frozen=True)
class Credentials:
    method: str
    secret: str  # the token, GitHub token or password
    username: str = ""
    mount_point: str = ""

    def __repr__(self) -> str:  # never print the secret, whatever logs a Credentials
        return f"Credentials(method={self.method!r}, username={self.username!r}, mount_point={self.mount_point!r})"


class _Cache:
    """Successful logins by HMAC of the credentials, each until its expiry; bounded in size."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, VaultLogin]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> VaultLogin | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry[1]

    def expires(self, key: str) -> float:
        """When the entry under ``key`` expires (the gate's clock), 0 if there is none."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else 0.0

    def put(self, key: str, login: VaultLogin, expires: float, now: float) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                for stale in [k for k, (until, _) in self._entries.items() if until <= now]:
                    del self._entries[stale]
                while len(self._entries) >= self.MAX_ENTRIES:  # still full: drop the oldest
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (expires, login)

    def __len__(self) -> int:
        return len(self._entries)


class VaultGate:
    """One Vault security definition, ready to authenticate callers; see the module docstring."""

    def __init__(self, name: str, settings: ClientSettings, *, is_active: bool = True,
                 default_auth_method: str = "", service_name: str = "", mount_point: str = "userpass",
                 github_mount_point: str = "github", cache_ttl: float = 5.0) -> None:
        self.name = name
        self.is_active = is_active
        self.settings = settings
        self.url = settings.url
        self.timeout = settings.timeout
        self.broken = settings.broken  # why this definition cannot work (say, a key that no longer decrypts)
        self.has_own_token = bool(settings.token)
        self.default_auth_method = default_auth_method
        self.service_name = service_name
        self.mount_point = mount_point
        self.github_mount_point = github_mount_point
        self.cache_ttl = cache_ttl
        self.clock: Callable[[], float] = time.monotonic
        self.cache = _Cache()
        self._cache_secret = crypto.derived_key("vault-cache")
        self._in_flight: dict[str, threading.Event] = {}  # cache keys being asked of Vault now
        self._in_flight_lock = threading.Lock()
        self.client = settings.client()

    @classmethod
    def from_definition(cls, definition: VaultConnection) -> VaultGate:
        """Build from a row. Contacts nothing; a secret that cannot be decrypted makes a gate that refuses all."""
        return cls(
            definition.name,
            ClientSettings.from_definition(definition),
            is_active=definition.is_active,
            default_auth_method=definition.default_auth_method,
            service_name=definition.service_name,
            mount_point=definition.mount_point,
            github_mount_point=definition.github_mount_point,
            cache_ttl=definition.cache_ttl,
        )

    def ping(self) -> PingResult:
        """Ask Vault's health endpoint through this gate's client; never raises."""
        return vault.ping_client(self.client, self.settings)

    # --- The one entry point -------------------------------------------------------------------

    def login(self, meta: Mapping[str, str], read_body: Callable[[], bytes], cid: str,
              call_service: ServiceCaller | None = None) -> VaultLogin | None:
        """Authenticate the request whose WSGI environ is ``meta``; None if it carries no Vault credentials.

        ``call_service`` invokes the chooser service, when the definition names one: the channel
        hands it over (``integration.invoke.call_service``), this module imports no invocation path.
        """
        if not self.is_active:
            raise VaultDenied("the definition is inactive")
        if self.broken:
            raise VaultUnavailable(self.broken)
        key = self.request_key(meta) or ""
        if key:
            cached = self.cache.get(key, self.clock())
            if cached is not None:
                return cached
        credentials = self.credentials(meta, read_body, cid, call_service)
        if credentials is None:
            return None
        if self.cache_ttl <= 0:
            return self._ask_vault(credentials)
        if self.service_name:  # the chooser's answer is the credentials
            key = self._cache_key((credentials.method, credentials.mount_point, credentials.username,
                                   credentials.secret))
            cached = self.cache.get(key, self.clock())
            if cached is not None:
                return cached
        return self._ask_once(key, credentials)

    def request_key(self, meta: Mapping[str, str]) -> str | None:
        """The cache key of a request's Vault headers as sent; None when those do not decide the answer.

        Without a chooser, the Vault headers as sent decide the credentials: a login remembered for
        these very values needs them read and checked again no more than Vault asked again.
        """
        if self.cache_ttl > 0 and not self.service_name:
            # NUL between the values: unambiguous for every key in the cache, since a login is only
            # remembered once every Vault header was read and none held a control character.
            return self._keyed_hash("\0".join(map(meta.get, VAULT_HEADERS, _NO_VALUES)))
        return None

    def _ask_once(self, key: str, credentials: Credentials) -> VaultLogin:
        """Ask Vault and remember a success; callers with the same credentials meanwhile wait for that answer."""
        with self._in_flight_lock:
            flight = self._in_flight.get(key)
            leading = flight is None
            if leading:
                flight = self._in_flight[key] = threading.Event()
        if not leading:
            flight.wait(self.timeout + 1.0)  # the leader's own call gives up after `timeout`
            cached = self.cache.get(key, self.clock())
            if cached is not None:
                return cached
            return self._ask_and_remember(key, credentials)  # refused or failed: never handed on
        try:
            return self._ask_and_remember(key, credentials)
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(key, None)
            flight.set()

    def _ask_and_remember(self, key: str, credentials: Credentials) -> VaultLogin:
        login = self._ask_vault(credentials)
        ttl = self.cache_ttl
        if login.lease_duration:  # never remember a login for longer than Vault grants it
            ttl = min(ttl, login.lease_duration)
        now = self.clock()
        self.cache.put(key, login, now + ttl, now)
        return login

    # --- Which credentials, by which method ----------------------------------------------------

    def credentials(self, meta: Mapping[str, str], read_body: Callable[[], bytes], cid: str,
                    call_service: ServiceCaller | None = None) -> Credentials | None:
        if self.service_name:
            method, values = self._ask_chooser(meta, read_body, cid, call_service)
            found = self._for_method(method, values)
            if found is None:
                raise VaultDenied(f"chooser service `{self.service_name}` chose {method} but gave no credentials")
            return found
        values = _request_values(meta)
        if self.default_auth_method:
            found = self._for_method(self.default_auth_method, values)
            if found is None and any(values.get(key) for key in VAULT_HEADERS):
                raise VaultDenied(f"the definition accepts only the {self.default_auth_method} method, "
                                  "and the request sent other Vault headers")
            return found
        for method in METHODS:  # Zato's order: token, then username and password, then GitHub
            found = self._for_method(method, values)
            if found is not None:
                return found
        return None

    def _for_method(self, method: str, values: Mapping[str, str | None]) -> Credentials | None:
        """The credentials ``method`` needs from ``values`` (checked), or None if none of them is there."""
        if method == TOKEN:
            token = values.get(TOKEN_HEADER)
            if not token:
                return None
            _check_token(token, "X-Zato-Vault-Token")
            return Credentials(TOKEN, token)
        if method == GITHUB:
            token = values.get(GITHUB_HEADER)
            if not token:
                return None
            _check_token(token, "X-Zato-Vault-Token-GitHub")
            return Credentials(GITHUB, token, mount_point=self.github_mount_point)
        if method == USERNAME_PASSWORD:
            username, password = values.get(USERNAME_HEADER), values.get(PASSWORD_HEADER)
            if not username and not password:
                return None
            if not username or not password:
                raise VaultDenied("X-Zato-Vault-Username and X-Zato-Vault-Password must be sent together")
            if not _USERNAME.match(username) or set(username) == {"."}:
                raise VaultDenied(f"X-Zato-Vault-Username is not a valid Vault username ({username[:64]!r})")
            if len(password) > MAX_VALUE_LENGTH:
                raise VaultDenied("X-Zato-Vault-Password is too long")
            mount_point = values.get(MOUNT_POINT_HEADER) or self.mount_point
            # The definition's own mount point was checked when it was saved; a caller's is checked here.
            if mount_point is not self.mount_point and not vault.valid_mount_point(mount_point):
                raise VaultDenied(f"X-Zato-Vault-Mount-Point is not a valid mount path ({mount_point[:64]!r})")
            return Credentials(USERNAME_PASSWORD, password, username=username, mount_point=mount_point)
        raise VaultDenied(f"unknown authentication method {method[:64]!r}")

    def _ask_chooser(
        self, meta: Mapping[str, str], read_body: Callable[[], bytes], cid: str, call_service: ServiceCaller | None,
    ) -> tuple[str, dict[str, str | None]]:
        """Invoke the chooser service in-process; anything but a clear answer is a denial (fail closed)."""
        name = self.service_name
        if call_service is None:
            raise VaultDenied(f"chooser service `{name}` cannot be invoked from here (no service caller)")
        body = read_body()  # errors (a body over the size limit) are the caller's to render
        payload = {
            "sec_def": self.name,
            "body": body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body),
            "headers": _http_headers(meta),
        }
        try:
            result = call_service(name, payload, cid=cid, channel=ChannelInfo(type="vault", name=self.name))
        except SwitchboardError as exc:
            raise VaultDenied(f"chooser service `{name}` failed ({exc.status_code}: {exc.details})") from None
        if result is None:
            raise VaultDenied(f"chooser service `{name}` is not deployed")
        answer = result.payload
        if isinstance(answer, (str, bytes)) and answer:
            try:
                answer = jsonio.loads(answer)  # within its limits: a chooser may echo a hostile body
            except ValueError:
                answer = None
        if result.status_code >= 400 or not isinstance(answer, Mapping):
            raise VaultDenied(f"chooser service `{name}` gave no usable answer (status {result.status_code})")
        method, headers = answer.get("method"), answer.get("headers")
        if method not in METHODS:
            raise VaultDenied(f"chooser service `{name}` chose an unknown method {str(method)[:64]!r}")
        if headers is None:
            headers = {}
        if not isinstance(headers, Mapping):
            raise VaultDenied(f"chooser service `{name}` answered headers that are not an object")
        values: dict[str, str | None] = {}
        for key, value in headers.items():
            wsgi_key = http_common.wsgi_key(str(key))
            if wsgi_key not in VAULT_HEADERS or value is None or value == "":
                continue
            if not isinstance(value, str):
                raise VaultDenied(f"chooser service `{name}` answered a non-text value for {key!s:.64}")
            if _has_control_characters(value):
                raise VaultDenied(f"chooser service `{name}` answered control characters in {key!s:.64}")
            values[wsgi_key] = value
        return method, values

    # --- Asking Vault ----------------------------------------------------------------------------

    def _ask_vault(self, credentials: Credentials) -> VaultLogin:
        method = credentials.method
        try:
            if method == TOKEN:
                return self._token_login(credentials)
            if method == USERNAME_PASSWORD:
                answer = self.client.auth.userpass.login(
                    username=credentials.username, password=credentials.secret, use_token=False,
                    mount_point=credentials.mount_point,
                )
            else:
                answer = self.client.auth.github.login(
                    token=credentials.secret, use_token=False, mount_point=credentials.mount_point
                )
            return self._from_auth_block(answer, credentials)
        except (VaultDenied, VaultUnavailable):
            raise
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Unauthorized, hvac.exceptions.Forbidden,
                hvac.exceptions.InvalidPath) as exc:
            who = f" for user {credentials.username!r}" if credentials.username else ""
            raise VaultDenied(f"Vault refused the {method} login{who}{_at(credentials)}: "
                              f"{_status_name(exc)} {_errors(exc)}") from None
        except hvac.exceptions.VaultError as exc:
            raise VaultUnavailable(f"Vault at {self.url} failed the {method} login: {_status_name(exc)} "
                                   f"{_errors(exc)}") from None
        except requests.exceptions.Timeout:
            raise VaultUnavailable(f"Vault at {self.url} did not answer within {self.timeout:g} s") from None
        except requests.exceptions.SSLError:
            raise VaultUnavailable(f"TLS with Vault at {self.url} failed (certificate or key)") from None
        except requests.exceptions.ConnectionError:
            raise VaultUnavailable(f"cannot connect to Vault at {self.url}") from None
        except Exception as exc:
            # Only the type: the text of some (requests' InvalidHeader, say) quotes header values.
            raise VaultUnavailable(f"asking Vault at {self.url} failed ({type(exc).__name__})") from None

    def _token_login(self, credentials: Credentials) -> VaultLogin:
        token = credentials.secret
        if self.has_own_token:
            answer = self.client.auth.token.lookup(token=token)
        else:
            # No token of our own: a token may always look itself up (Vault's default policy).
            answer = self.client.adapter.get("/v1/auth/token/lookup-self", headers={"X-Vault-Token": token})
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            raise VaultUnavailable(f"Vault at {self.url} answered the token lookup without a data block")
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        username = meta.get("username") or data.get("display_name") or "token"
        ttl = data.get("ttl")
        return VaultLogin(
            username=str(username),
            method=TOKEN,
            client_token=token,
            lease_duration=ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
            policies=_policies(data.get("policies")),
        )

    def _from_auth_block(self, answer: Any, credentials: Credentials) -> VaultLogin:
        auth = answer.get("auth") if isinstance(answer, dict) else None
        if not isinstance(auth, dict) or not isinstance(auth.get("client_token"), str) or not auth["client_token"]:
            raise VaultUnavailable(
                f"Vault at {self.url} answered the {credentials.method} login without a client token"
            )
        metadata = auth.get("metadata") if isinstance(auth.get("metadata"), dict) else {}
        lease = auth.get("lease_duration")
        return VaultLogin(
            username=str(metadata.get("username") or credentials.username or ""),
            method=credentials.method,
            client_token=auth["client_token"],
            lease_duration=lease if isinstance(lease, int) and not isinstance(lease, bool) else None,
            policies=_policies(auth.get("policies")),
        )

    def _cache_key(self, parts: tuple[str | None, ...]) -> str:
        """A keyed BLAKE2b of the credentials (with the definition's name), never the credentials themselves.

        ``parts`` are the request's Vault header values as sent, or a chooser's credentials. On
        every call, so cheap: one C call over the ``repr`` of the parts' tuple, which quotes each
        one, so that parts cannot run together.
        """
        return self._keyed_hash(repr((self.name, *parts)))

    def _keyed_hash(self, text: str) -> str:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._cache_secret,
                               digest_size=16).hexdigest()


class VaultAuthentication(DefinitionAuthentication):
    """Callers authenticated by a Vault server (``connections.vault``): token, userpass or GitHub.

    Vault saying no is a 401; Vault not answering is a 503. Nobody passes without a yes.
    """

    sec_type = "vault_conn_sec"
    model = "connections.VaultConnection"
    message = "Failed to authenticate"

    def __init__(self, name: str, is_active: bool, gate: Any) -> None:
        super().__init__(name, is_active)
        self.gate = gate

    @classmethod
    def from_definition(cls, definition: Any) -> VaultAuthentication:
        return cls(definition.name, definition.is_active, VaultGate.from_definition(definition))

    def check(self, request: Any, attempt: limits.Attempt) -> tuple[CallerIdentity, str]:
        cid = getattr(request, "cid", "-")
        if not self.is_active:
            raise self.fail("the definition is inactive", request, self.message, counts=False)
        attempt.before_slow_check()  # a Vault call may follow: a blocked caller never gets that far
        try:
            login = self.gate.login(request.META, lambda: request.body, cid, getattr(request, "call_service", None))
        except RequestDataTooBig:
            raise PayloadTooLarge("Request body too large") from None
        except VaultDenied as exc:
            raise self.fail(f"Vault: {exc}", request, self.message) from None
        except VaultUnavailable as exc:
            logger.error("[%s] Vault for `%s` is unavailable: %s", cid, self.name, exc)
            raise ServiceUnavailable("The security backend cannot be reached; try again later") from None
        if login is None:
            raise self.fail("no Vault credentials in the request", request, self.message, counts=False)
        headers = {"X-Zato-Vault-Token": login.client_token}
        if login.lease_duration is not None:
            headers["X-Zato-Vault-Token-Lease-Duration"] = str(login.lease_duration)
        return CallerIdentity(login.username, self.name, self.sec_type, response_headers=headers), self.name

    def memo_key(self, meta: Mapping[str, str]) -> str | None:
        """The gate's own cache key: a call is answered from the memo while the gate remembers its login."""
        return self.gate.request_key(meta)

    def memo_expiry(self, memo: bytes | str) -> float:
        # The gate's cache entry, from its clock (time.monotonic) to the memo's; 0 if not cached.
        expires = self.gate.cache.expires(memo)
        return expires - self.gate.clock() + time.monotonic() if expires else 0.0

    def authenticate_header(self, request: Any) -> str:
        return "zato-vault"

    # --- WebSocket clients ------------------------------------------------------------------------

    def has_header_credentials(self, meta: Mapping[str, str]) -> bool:
        return any(key in meta for key in (TOKEN_HEADER, USERNAME_HEADER, GITHUB_HEADER))

    def websocket_credentials(self, *, token: str | None = None, username: str | None = None,
                              password: str | None = None) -> dict[str, str]:
        if username is not None and password is not None:
            return {USERNAME_HEADER: wsgi(username), PASSWORD_HEADER: wsgi(password)}
        if token:
            return {TOKEN_HEADER: wsgi(token)}
        raise CredentialsRefused("This channel expects a Vault token, or a username and password")


# --- Helpers ---------------------------------------------------------------------------------------


# Unicode category Cc is exactly C0, DEL and C1: one regex search instead of a lookup per character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def _header_text(raw: str, wsgi_key: str) -> str:
    """A WSGI header value (bytes decoded as latin-1) as the UTF-8 text the client meant; else a denial."""
    if raw.isascii():  # the usual case: ASCII reads the same in latin-1 and UTF-8
        text = raw
    else:
        try:
            text = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise VaultDenied(f"{_display_name(wsgi_key)} is not valid UTF-8") from None
    if _has_control_characters(text):
        raise VaultDenied(f"{_display_name(wsgi_key)} contains control characters")
    if len(text) > MAX_VALUE_LENGTH:
        raise VaultDenied(f"{_display_name(wsgi_key)} is too long")
    return text


def _display_name(wsgi_key: str) -> str:
    return http_common.http_name(wsgi_key).replace("Github", "GitHub")


def _request_values(meta: Mapping[str, str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for key in VAULT_HEADERS:
        raw = meta.get(key)
        values[key] = _header_text(raw, key) if raw else None
    return values


def _http_headers(meta: Mapping[str, str]) -> dict[str, str]:
    """The request's headers by their HTTP names (X-Zato-Vault-Token), values as UTF-8 text, for a chooser."""
    headers: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(value, str):
            continue
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            try:
                text = value.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                text = value.encode("latin-1", "replace").decode("utf-8", "replace")
            headers[http_common.http_name(key)] = text
    return headers


def _check_token(token: str, header: str) -> None:
    if not _TOKEN.match(token):
        raise VaultDenied(f"{header} is not a valid token (printable ASCII without spaces)")


def _policies(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _status_name(exc: hvac.exceptions.VaultError) -> str:
    return type(exc).__name__


def _errors(exc: hvac.exceptions.VaultError) -> str:
    errors = exc.errors if isinstance(exc.errors, list) else []
    return ("(" + "; ".join(str(item) for item in errors)[:200] + ")") if errors else ""


def _at(credentials: Credentials) -> str:
    return f" at mount {credentials.mount_point!r}" if credentials.mount_point else ""
