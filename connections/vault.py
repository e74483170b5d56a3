"""Vault as an outgoing connection: the client settings of a ``VaultConnection``, its ping, ``self.out.vault``.

A ``VaultConnection`` row is both a security definition (its inbound half, authenticating
channel callers, is ``connections.vault_inbound``) and a connection to a Vault server. This
module owns what both halves share: ``ClientSettings`` (URL, Switchboard's own token, TLS
files, timeout) and the ``hvac.Client`` made from them, the ping of Vault's health endpoint,
and ``VaultClient``, what ``self.out.vault[name]`` gives a service: ``.client`` is an
``hvac.Client`` authenticated with the definition's own token, for reading secrets::

    secret = self.out.vault["prod"].client.secrets.kv.v2.read_secret_version(path="db")

Nothing here contacts Vault until asked; secrets never appear in messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import requests

from connections.base import Connection, PingResult
from connections.http_common import os_reason, pem_file

if TYPE_CHECKING:
    from connections.models import VaultConnection

KIND = "vault"


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one Vault: the URL, Switchboard's own token, TLS and the timeout; ``broken`` if unusable."""

    url: str
    token: str = ""
    timeout: float = 10.0
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    broken: str = ""  # why the definition cannot be used (a secret that no key decrypts, say)

    def __repr__(self) -> str:  # never print the token
        return f"ClientSettings(url={self.url!r}, timeout={self.timeout!r}, broken={self.broken!r})"

    @classmethod
    def from_definition(cls, definition: VaultConnection) -> ClientSettings:
        """From a row; decrypts its secrets and writes its TLS files, contacts nothing."""
        try:
            token = definition.get_token()
            verify: bool | str = bool(definition.tls_verify)
            if definition.tls_verify and definition.tls_ca_cert.strip():
                verify = str(_private_file(definition.tls_ca_cert, ".ca.pem"))
            cert = None
            if definition.tls_client_cert.strip() and definition.tls_client_key_encrypted:
                cert = (str(_private_file(definition.tls_client_cert, ".cert.pem")),
                        str(_private_file(definition.get_tls_client_key(), ".key.pem")))
        except (ValueError, OSError) as exc:
            return cls(definition.url, timeout=definition.timeout, broken=f"the definition cannot be used: {exc}")
        return cls(definition.url, token, definition.timeout, verify, cert)

    def client(self) -> hvac.Client:
        # Explicit values everywhere: left as None, hvac would take VAULT_TOKEN, VAULT_CACERT
        # or VAULT_CLIENT_CERT from the environment instead of this definition.
        return hvac.Client(url=self.url, token=self.token, verify=self.verify, cert=self.cert or False,
                           timeout=self.timeout)


class VaultClient(Connection):
    """``self.out.vault[name]``: the definition's ``hvac.Client`` (its own token), for services."""

    kind = KIND

    def __init__(self, name: str, settings: ClientSettings, *, is_active: bool = True) -> None:
        self.name = name
        self.settings = settings
        self.is_active = is_active and not settings.broken
        self._client: hvac.Client | None = None

    @classmethod
    def from_definition(cls, definition: VaultConnection) -> VaultClient:
        return cls(definition.name, ClientSettings.from_definition(definition), is_active=definition.is_active)

    @property
    def client(self) -> hvac.Client:
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    def ping(self) -> PingResult:
        return ping_client(self.client, self.settings)

    def close(self) -> None:
        if self._client is not None:
            self._client.adapter.close()


def ping(definition: VaultConnection) -> PingResult:
    """Ping the Vault a connection points at, with its URL, timeout, token and TLS settings."""
    connection_settings = ClientSettings.from_definition(definition)
    return ping_client(connection_settings.client(), connection_settings)


def ping_client(client: hvac.Client, connection_settings: ClientSettings) -> PingResult:
    """Ask Vault's health endpoint (GET /v1/sys/health) through ``client``; never raises."""
    if connection_settings.broken:
        return PingResult(False, 0.0, connection_settings.broken)
    url = connection_settings.url
    started = time.perf_counter()
    try:
        answer = client.sys.read_health_status(method="GET")
    except Exception as exc:
        return PingResult(False, (time.perf_counter() - started) * 1000,
                          transport_error(exc, url, connection_settings.timeout))
    ms = (time.perf_counter() - started) * 1000
    ok, info = _health(url, answer)
    return PingResult(ok, ms, info)


def transport_error(exc: Exception, url: str, timeout: float) -> str:
    """Why Vault could not be asked at all, as precisely as the exception says without quoting headers."""
    if isinstance(exc, requests.exceptions.Timeout):
        return f"Vault at {url} did not answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with Vault at {url} failed: {os_reason(exc) or 'certificate or key rejected'}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot connect to Vault at {url}: {os_reason(exc) or 'connection failed'}"
    # Only the type: the text of some (requests' InvalidHeader, say) quotes header values.
    return f"asking Vault at {url} failed ({type(exc).__name__})"


def valid_mount_point(value: str) -> bool:
    """A Vault mount path: segments of letters, digits, '.', '_' and '-', none of them '.' or '..'.

    Mount points end up in the path of the URL sent to Vault, and callers may choose one
    (X-Zato-Vault-Mount-Point), so nothing in them may climb out of /v1/auth/.
    """
    if not value or len(value) > 200:
        return False
    for segment in value.split("/"):
        if segment in ("", ".", "..") or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in segment):
            return False
    return True


# --- Ping ------------------------------------------------------------------------------------------

# Vault's documented /v1/sys/health answers besides 200 (initialized, unsealed, active). A
# standby answers too, forwarding requests to the active node, so it counts as reachable.
_HEALTH_CODES = {
    429: (True, "unsealed standby node (requests are forwarded to the active node)"),
    472: (False, "a disaster-recovery secondary, which does not serve requests"),
    473: (True, "a performance standby node"),
    501: (False, "not initialized"),
    503: (False, "sealed"),
    530: (False, "removed from its cluster"),
}


def _health(url: str, answer: Any) -> tuple[bool, str]:
    """Read hvac's answer: a dict for a 200 with JSON, else the ``requests.Response``."""
    if isinstance(answer, dict):
        if answer.get("sealed") is True or answer.get("initialized") is False:
            return False, f"Vault at {url} answered 200 but reports sealed={answer.get('sealed')}, " \
                          f"initialized={answer.get('initialized')}"
        return True, _describe(answer, "initialized, unsealed, active")
    status = getattr(answer, "status_code", None)
    body = _json_body(answer)
    if status in _HEALTH_CODES:
        ok, state = _HEALTH_CODES[status]
        if ok:
            return True, _describe(body, state)
        version = f" {body['version']}" if isinstance(body.get("version"), str) else ""
        return False, f"Vault{version} at {url} is {state} (HTTP {status})"
    if status == 200:
        return False, f"{url} answered /v1/sys/health without Vault's JSON: is it a Vault server?"
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    detail = (": " + "; ".join(str(item) for item in errors)[:200]) if errors else ""
    return False, f"Vault at {url} answered HTTP {status} to /v1/sys/health{detail}"


def _describe(body: dict[str, Any], state: str) -> str:
    version = body.get("version")
    cluster = body.get("cluster_name")
    text = f"Vault {version}, {state}" if isinstance(version, str) else f"Vault {state}"
    return f"{text}, cluster {cluster}" if isinstance(cluster, str) and cluster else text


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _private_file(content: str, suffix: str) -> Path:
    """A PEM file of a Vault definition, in ``VAR_DIR``/vault (``http_common.pem_file``)."""
    return pem_file(content, suffix, directory="vault", purpose="vault-files")
