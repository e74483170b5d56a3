"""``SlapdServer``: Debian's OpenLDAP slapd as a private directory server on free ports of 127.0.0.1.

The machine's ``/usr/sbin/slapd`` runs as a plain foreground process (``-d``) with a
``slapd.conf`` of its own in a temporary directory: its own MDB database, schema files from
``/etc/ldap/schema``, and no ldapi socket, so it never meets a system slapd or its
``/etc/ldap/slapd.d``. It listens on two ports: ``ldap://`` (plain, StartTLS available) and
``ldaps://`` (TLS from the first byte), both with a certificate from a ``ThrowawayCA``.

The directory is shaped like the seed's Active Directory example (search base
``cn=users,dc=example,dc=com``):

* ``dc=example,dc=com`` with ``cn=users`` (class ``container``, declared here with Active
  Directory's own OID because OpenLDAP's schema has no such class) holding ``CAST``: people
  with ``uid``, ``cn``, ``givenName``, ``sn``, ``mail`` and a ``{SSHA}`` ``userPassword``
  hashed by ``slappasswd``, so simple binds as them work (``check_credentials``);
* ``cn=switchboard,dc=example,dc=com`` (``BIND_DN`` / ``BIND_PASSWORD``): the connection's
  bind user, allowed to read, add, modify and delete anything, passwords included;
* the people may read the directory and change their own password; anonymous clients may
  search (OpenLDAP's usual default) but never read ``userPassword``, only bind with it.

The data is loaded with ``slapadd`` before the first start, so two servers built from the
same cast answer alike (a pool). ``stop()`` and ``start()`` again keep the ports and the data:
a pool test can take its first server down and bring it back.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ldap3

from tests.servers.procs import ManagedProcess, free_port, wait_for
from tests.servers.sandbox import ensure_debian_packages
from tests.servers.testca import ThrowawayCA

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPPASSWD = "/usr/sbin/slappasswd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")  # Debian builds the back-ends as loadable modules
START_TIMEOUT = 15.0

BASE_DN = "dc=example,dc=com"
USERS_DN = f"cn=users,{BASE_DN}"  # the seed's search base, 'cn=users, dc=example, dc=com'
BIND_DN = f"cn=switchboard,{BASE_DN}"
BIND_PASSWORD = "switchboard-Bind-Pa55"


@dataclass(frozen=True)
class LdapUser:
    """A person in the test directory."""

    uid: str
    given_name: str
    sn: str
    mail: str
    password: str

    @property
    def cn(self) -> str:
        return f"{self.given_name} {self.sn}"

    def dn(self, parent: str = USERS_DN) -> str:
        return f"uid={self.uid},{parent}"

    def attributes(self) -> dict[str, str]:
        """ldap3 ``add`` attributes (without the password, which ``add_user`` hashes or sends as given)."""
        return {"uid": self.uid, "cn": self.cn, "givenName": self.given_name, "sn": self.sn, "mail": self.mail}


#: Who is in ``cn=users``: plain ASCII, an apostrophe, and a name outside Latin-1.
CAST = (
    LdapUser("ann", "Ann", "Archer", "ann.archer@example.com", "Ann-Pa55-word"),
    LdapUser("bob", "Bob", "O'Brien", "bob.obrien@example.com", "Bob-Pa55-word"),
    LdapUser("zofia", "Zofia", "Wójcik-Żak", "zofia.wojcik@example.com", "Zofia-zażółć-1"),
)


def slappasswd(password: str) -> str:
    """``{SSHA}...``: OpenLDAP's salted SHA-1 scheme, as its own tool writes it (slapd's default)."""
    done = subprocess.run([SLAPPASSWD, "-n", "-h", "{SSHA}", "-T", "/dev/stdin"], input=password,
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def _ldif_value(name: str, value: str) -> str:
    # LDIF needs base64 for anything outside safe ASCII (UTF-8 names, a leading space...).
    if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def directory_ldif(users: Iterable[LdapUser]) -> str:
    """The whole test directory as LDIF, for ``slapadd``."""
    entries = [
        [("objectClass", "dcObject"), ("objectClass", "organization"), ("dc", "example"), ("o", "Example")],
        [("objectClass", "organizationalRole"), ("objectClass", "simpleSecurityObject"), ("cn", "switchboard"),
         ("description", "The bind user of Switchboard's LDAP connections"),
         ("userPassword", slappasswd(BIND_PASSWORD))],
        [("objectClass", "container"), ("cn", "users")],
    ]
    dns = [BASE_DN, BIND_DN, USERS_DN]
    for user in users:
        dns.append(user.dn())
        entries.append([("objectClass", "inetOrgPerson"), *user.attributes().items(),
                        ("userPassword", slappasswd(user.password))])
    blocks = []
    for dn, attributes in zip(dns, entries, strict=True):
        blocks.append("\n".join([_ldif_value("dn", dn), *(_ldif_value(k, v) for k, v in attributes)]))
    return "\n\n".join(blocks) + "\n"


class SlapdServer:
    """One private slapd; ``url`` / ``ldaps_url`` once started. ``close()`` also deletes its files."""

    def __init__(self, ca: ThrowawayCA, *, users: Sequence[LdapUser] = CAST, log_level: str = "stats",
                 name: str = "slapd") -> None:
        ensure_debian_packages("slapd", "ldap-utils")
        self.ca = ca
        self.users = tuple(users)
        self.log_level = log_level  # slapd -d: "stats" logs connections and operations, "none" nothing
        self.name = name
        self.host = "127.0.0.1"
        self.port = 0
        self.ldaps_port = 0
        self.directory = Path(tempfile.mkdtemp(prefix=f"switchboard-{name}-"))
        self.data_dir = self.directory / "data"
        self.config_path = self.directory / "slapd.conf"
        self.log_path = self.directory / "slapd.log"
        self.certificate = ca.issue_server(f"{name}-server")
        self.process: ManagedProcess | None = None
        self._loaded = False
        self._log_offset = 0

    # --- Configuration ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        schemas = ["core", "cosine", "nis", "inetorgperson"]
        lines = [
            *(f"include {SCHEMA_DIR / name}.schema" for name in schemas),
            # Active Directory's structural class for cn=Users, missing from OpenLDAP's schema.
            "objectclass ( 1.2.840.113556.1.3.23 NAME 'container' SUP top STRUCTURAL MUST cn )",
            f"pidfile {self.directory / 'slapd.pid'}",
            f"argsfile {self.directory / 'slapd.args'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            f"TLSCACertificateFile {self.ca.ca_path}",
            f"TLSCertificateFile {self.certificate.cert_path}",
            f"TLSCertificateKeyFile {self.certificate.key_path}",
            "database mdb",
            "maxsize 67108864",  # a sparse 64 MiB map: far more than tests add
            f'suffix "{BASE_DN}"',
            f"directory {self.data_dir}",
            "index objectClass,uid,mail eq",
            f'access to attrs=userPassword by dn.exact="{BIND_DN}" write by self write by anonymous auth by * none',
            f'access to * by dn.exact="{BIND_DN}" write by * read',
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _load(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        ldif = self.directory / "directory.ldif"
        ldif.write_text(directory_ldif(self.users))
        done = subprocess.run([SLAPADD, "-q", "-f", str(self.config_path), "-l", str(ldif)], capture_output=True,
                              text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"slapadd failed ({done.returncode}): {done.stderr[-2000:]}")
        self._loaded = True

    # --- Lifecycle -------------------------------------------------------------------------------

    def start(self) -> SlapdServer:
        """Start (or start again, on the same ports) and return once both ports accept connections."""
        self._write_config()
        if not self._loaded:
            self._load()
        keep_ports = bool(self.port)
        for _ in range(5):
            if not keep_ports:
                self.port, self.ldaps_port = free_port(), free_port()
            urls = f"ldap://{self.host}:{self.port}/ ldaps://{self.host}:{self.ldaps_port}/"
            argv = [SLAPD, "-h", urls, "-f", str(self.config_path), "-d", self.log_level]
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process = ManagedProcess(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                          log_path=self.log_path, cwd=self.directory).start()
            try:
                wait_for(self._ready, START_TIMEOUT, message=lambda: self.process.log_tail() if self.process else "")
                return self
            except _PortTaken:
                self.process.stop()
                if keep_ports:
                    raise RuntimeError(f"{self.name}: port {self.port} or {self.ldaps_port} was taken "
                                       "while the server was down") from None
        raise RuntimeError(f"{self.name} could not bind free ports")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = self.process.log_text()[self._log_offset:]  # this attempt's lines, not an earlier one's
            if "errno=98" in log or "Address already in use" in log:
                raise _PortTaken
            raise RuntimeError(f"{self.name} exited with {self.process.poll()}: {log}")
        for port in (self.port, self.ldaps_port):
            try:
                socket.create_connection((self.host, port), timeout=1).close()
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """Stop the process; the data and ports stay for ``start()``."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Clients ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    def tls(self, ca_path: Path | None = None) -> ldap3.Tls:
        """ldap3 TLS settings that require a certificate signed by this server's CA (or ``ca_path``)."""
        return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_path or self.ca.ca_path))

    def server(self, *, ldaps: bool = False, ca_path: Path | None = None, timeout: float = 5.0) -> ldap3.Server:
        """An ``ldap3.Server`` for this slapd: the plain port (StartTLS-able) or, with ``ldaps``, the TLS one."""
        return ldap3.Server(self.host, port=self.ldaps_port if ldaps else self.port, use_ssl=ldaps,
                            tls=self.tls(ca_path), get_info=ldap3.NONE, connect_timeout=timeout)

    def connect(self, user: str | None = BIND_DN, password: str | None = BIND_PASSWORD, **options: object
                ) -> ldap3.Connection:
        """A bound ``ldap3.Connection`` on the plain port (the bind user by default); raises when the bind fails."""
        return ldap3.Connection(self.server(), user=user, password=password, auto_bind=True,
                                receive_timeout=10, raise_exceptions=False, **options)


class _PortTaken(Exception):
    pass


# --- Per-test subtrees --------------------------------------------------------------------------------


def create_subtree(conn: ldap3.Connection, users: Iterable[LdapUser] = ()) -> str:
    """A new ``ou=t-<random>,dc=example,dc=com`` with ``users`` in it; returns its DN.

    Tests that add, modify or delete work in a subtree of their own, so the shared server's
    cast stays as every other test expects it, whatever order xdist runs them in.
    """
    dn = f"ou=t-{uuid.uuid4().hex[:12]},{BASE_DN}"
    if not conn.add(dn, ["organizationalUnit"], {"ou": dn.split(",")[0][3:]}):
        raise RuntimeError(f"Could not create {dn}: {conn.result}")
    for user in users:
        add_user(conn, user, dn)
    return dn


def add_user(conn: ldap3.Connection, user: LdapUser, parent: str) -> str:
    """Add ``user`` under ``parent`` with a hashed password (binds as it work at once); returns its DN."""
    dn = user.dn(parent)
    attributes = {**user.attributes(), "userPassword": slappasswd(user.password)}
    if not conn.add(dn, ["inetOrgPerson"], attributes):
        raise RuntimeError(f"Could not add {dn}: {conn.result}")
    return dn


def delete_subtree(conn: ldap3.Connection, dn: str) -> None:
    """Delete ``dn`` and everything under it, leaves first (no tree-delete control needed)."""
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.SUBTREE, attributes=[])
    found = [entry.entry_dn for entry in conn.entries]
    for entry_dn in sorted(found, key=lambda value: value.count(","), reverse=True):
        conn.delete(entry_dn)
