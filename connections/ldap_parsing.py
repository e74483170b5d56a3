"""The raw text of an LDAP connection's settings, parsed: its server list and its NTLM bind user.

``parse_servers`` reads the administrator's list (one server a line, ``host``, ``host:port``,
``ldap://host:port`` or ``ldaps://host:port``; IPv6 addresses in brackets) into ``LdapServer``
values, refusing what ldap3 could not use, with a message that quotes the line. The TLS mode
decides the default port and whether ``ldaps://`` may appear: a scheme that contradicts the mode
is an error rather than a silent choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SERVERS = 20
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
_NTLM_USER = re.compile(r"^[^\\/:*?\"<>|\s]{1,64}\\[^\\\s][^\\]{0,255}$")


@dataclass(frozen=True)
class LdapServer:
    host: str
    port: int
    use_ssl: bool

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'ldaps' if self.use_ssl else 'ldap'}://{host}:{self.port}"


def parse_servers(text: str, tls_mode: str = "none") -> list[LdapServer]:
    """The servers of ``text`` in order; ``ValueError`` quoting the first bad line."""
    use_ssl = tls_mode == "ldaps"
    servers: list[LdapServer] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        servers.append(_parse_one(line, use_ssl))
    if not servers:
        raise ValueError("Give at least one server, e.g. ldap://ldap.example.com:389.")
    if len(servers) > MAX_SERVERS:
        raise ValueError(f"At most {MAX_SERVERS} servers.")
    return servers


def _parse_one(line: str, use_ssl: bool) -> LdapServer:
    shown = line[:100]
    rest = line
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", line)
    if match:
        scheme = match.group(1).lower()
        if scheme not in ("ldap", "ldaps"):
            raise ValueError(f"`{shown}`: the scheme must be ldap:// or ldaps://.")
        if (scheme == "ldaps") != use_ssl:
            raise ValueError(f"`{shown}`: {scheme}:// contradicts the TLS mode "
                             f"({'LDAPS' if use_ssl else 'not LDAPS'}); change one of them.")
        rest = line[match.end():].rstrip("/")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"`{shown}`: an IPv6 address needs its closing bracket.")
        host, after = rest[1:end], rest[end + 1:]
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise ValueError(f"`{shown}`: not an IPv6 address.")
        port_text = after[1:] if after.startswith(":") else None
        if after and port_text is None:
            raise ValueError(f"`{shown}`: expected :port after the address.")
    else:
        host, _, port_text_or_empty = rest.partition(":")
        port_text = port_text_or_empty if ":" in rest else None
        if not _HOST.match(host):
            raise ValueError(f"`{shown}`: not a host name or address.")
    port = 636 if use_ssl else 389
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"`{shown}`: the port must be a number from 1 to 65535.")
        port = int(port_text)
    return LdapServer(host, port, use_ssl)


def is_ntlm_user(username: str) -> bool:
    """``DOMAIN\\user``, as NTLM binds need it."""
    return bool(_NTLM_USER.match(username))
