"""What the HTTP connections (REST, HL7 FHIR, Vault) share: errors, sessions, TLS files, header names and lines.

Errors a service sees from an outgoing HTTP call are ``OutgoingHttpError`` subclasses: each
names the connection and says what went wrong, and, being ``SwitchboardError``s, reach the
channel's caller in the one error shape with the CID. The caller is not told the backend's
address (the service's log line and ``exc.url`` have it):

* ``BackendUnreachable`` (502): refused, reset, no such host;
* ``BackendTimeout`` (504): no answer within the connection's timeout;
* ``BackendTLSError`` (502): the certificate did not verify, or TLS failed otherwise;
* ``InvalidResponse`` (502): a JSON connection got a 2xx answer that is not JSON;
* ``InvalidCall`` (500): the service's call itself is wrong (a URL path parameter missing).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import tempfile
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from accounts import crypto
from connections.base import row_fingerprint
from integration.errors import SwitchboardError


class OutgoingHttpError(SwitchboardError):
    """An outgoing HTTP call failed; ``connection`` names it, ``url`` is where it went (without the query)."""

    status_code = 502

    def __init__(self, kind: str, connection: str, reason: str, url: str = "") -> None:
        super().__init__(f"Outgoing {kind} connection `{connection}`: {reason}")
        self.kind, self.connection, self.reason, self.url = kind, connection, reason, url


class BackendUnreachable(OutgoingHttpError):
    status_code = 502


class BackendTimeout(OutgoingHttpError):
    status_code = 504


class BackendTLSError(OutgoingHttpError):
    status_code = 502


class InvalidResponse(OutgoingHttpError):
    status_code = 502


class InvalidCall(OutgoingHttpError):
    status_code = 500


def translate(exc: requests.RequestException, kind: str, name: str, url: str, timeout: float
              ) -> OutgoingHttpError:
    """The ``OutgoingHttpError`` for a ``requests`` exception; its text never quotes headers."""
    if isinstance(exc, requests.Timeout):
        return BackendTimeout(kind, name, f"no answer within {timeout:g} s", url)
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendTLSError(kind, name, f"TLS failed: {os_reason(exc) or 'certificate or key rejected'}", url)
    if isinstance(exc, requests.ConnectionError):
        return BackendUnreachable(kind, name, f"cannot connect: {os_reason(exc) or 'connection failed'}", url)
    return OutgoingHttpError(kind, name, f"the call failed ({type(exc).__name__})", url)


def os_reason(exc: BaseException) -> str:
    """The innermost socket or TLS reason behind a requests error ('Connection refused', 'certificate verify
    failed: self-signed certificate')."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    reason = ""
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) and current.verify_message:
            return f"certificate verify failed: {current.verify_message}"
        if isinstance(current, ssl.SSLError) and current.reason:
            reason = str(current.reason).replace("_", " ").lower()
        elif isinstance(current, OSError) and current.strerror and not reason:
            reason = current.strerror
        elif "RemoteDisconnected" in type(current).__name__ and not reason:
            reason = "the server closed the connection without answering"
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return reason


def pooled_session(pool_size: int, verify: bool | str, auth: requests.auth.AuthBase | None = None
                   ) -> requests.Session:
    """A connection's ``requests.Session``: ``pool_size`` sockets kept per host and reused across calls.

    It ignores the environment (proxies, .netrc, CA bundle variables) and keeps no cookies:
    everything a call sends comes from the connection's row and the call. No retries.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = verify
    session.auth = auth
    return session


def parse_header_lines(text: str) -> dict[str, str]:
    """``Name: value`` lines as a dict; ``ValueError`` naming the first bad line (no header injection)."""
    headers: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not all(ch.isascii() and (ch.isalnum() or ch in "!#$%&'*+.^_`|~-") for ch in name):
            raise ValueError(f"Write each header as Name: value; {line[:80]!r} is not.")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError(f"The value of header {name} has control characters.")
        headers[name] = value
    return headers


def verify_setting(tls_verify: bool, ca_pem: str) -> bool | str:
    """``requests``' ``verify``: False, True (the system's CAs) or the path of the connection's CA bundle."""
    if not tls_verify:
        return False
    return str(pem_file(ca_pem, ".ca.pem")) if ca_pem.strip() else True


def pem_file(content: str, suffix: str, *, directory: str = "outgoing-tls", purpose: str = "outgoing-tls-files"
             ) -> Path:
    """Write PEM text to a 0600 file in a 0700 directory, named by a keyed hash of it; reuse an existing one.

    requests takes CA bundles and client certificates as paths. ``directory`` is below
    ``VAR_DIR``, ``purpose`` names the key of the hash (each user of files its own). A file is
    written to a temporary name and renamed, so processes writing the same one at once never
    see it half-written.
    """
    folder = Path(settings.VAR_DIR) / directory
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    data = content.encode()
    digest = hmac.new(crypto.derived_key(purpose), data, hashlib.sha256).hexdigest()[:40]
    path = folder / (digest + suffix)
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def http_name(wsgi_key: str) -> str:
    """HTTP_X_ZATO_VAULT_TOKEN -> X-Zato-Vault-Token; CONTENT_TYPE -> Content-Type."""
    return "-".join(part.capitalize() for part in wsgi_key.removeprefix("HTTP_").split("_"))


def wsgi_key(name: str) -> str:
    """X-Zato-Vault-Token, x-zato-vault-token and HTTP_X_ZATO_VAULT_TOKEN all become HTTP_X_ZATO_VAULT_TOKEN."""
    key = name.strip().upper().replace("-", "_")
    return key if key.startswith("HTTP_") else "HTTP_" + key


def fingerprint(row: Any) -> str:
    """A row's fingerprint with its OAuth definition's: a changed secret or scope rebuilds the connection too."""
    own = row_fingerprint(row)
    definition = getattr(row, "oauth", None) if getattr(row, "oauth_id", None) else None
    return own if definition is None else own + row_fingerprint(definition)
