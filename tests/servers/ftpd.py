"""``FtpServer``: pyftpdlib in a process of its own on a free port of 127.0.0.1, plain FTP and explicit FTPS.

pyftpdlib is a real, widely deployed FTP server (RFC 959, 2228/4217 for ``AUTH TLS``, 3659
for ``MLSD``/``SIZE``/``MDTM``), so ``ftplib`` and the connection built on it meet real
replies. It runs in a subprocess (``tests/servers/ftpd_main.py``), never in the test process,
so a blocked client cannot stall the server and a stop ends everything it opened.

What it offers (see ``tests/servers/sandbox.py`` for the Unix side):

* one FTP user (``user``/``password``) whose home is ``home`` = the FTP root ``/``; files
  are created as the sandbox's test user;
* ``/data/current.csv`` (``BILLING_CSV``): the seed's billing file;
* ``/readonly`` (listable, not writable) and ``/locked`` (not listable): "550 Permission denied";
* ``/full``: a 1 MiB filesystem, so a larger STOR fails with "No space left on device";
* passive mode (a fresh port per transfer, chosen by the kernel) and active mode (PORT/EPRT,
  the server connecting back from 127.0.0.1);
* with ``tls=True`` (the default) explicit FTPS: ``AUTH TLS``, ``PBSZ``/``PROT P``, with a
  certificate from the session's ``ThrowawayCA``; plain FTP still works on the same port
  unless ``tls_required=True``, which refuses logins before ``AUTH TLS`` and data before ``PROT P``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from tests.servers.procs import REPO_ROOT, ManagedProcess, wait_for
from tests.servers.sandbox import TEST_USER, FileServerRoot, require_root
from tests.servers.testca import ThrowawayCA

MAIN = REPO_ROOT / "tests" / "servers" / "ftpd_main.py"
START_TIMEOUT = 20.0
#: The seed's billing file, served at /data/current.csv.
BILLING_CSV = (
    "customer_id,period,amount,currency\n"
    "C-1001,2026-11,129.90,EUR\n"
    "C-1002,2026-11,54.00,EUR\n"
    "C-1003,2026-11,1200.00,EUR\n"
)


class FtpServer:
    """One pyftpdlib process. ``start()`` returns once the port is bound; ``close()`` stops it and deletes its tree."""

    def __init__(self, ca: ThrowawayCA | None, *, user: str = "billing", password: str | None = None,
                 tls: bool = True, tls_required: bool = False, log_level: str = "INFO",
                 idle_timeout: int = 120) -> None:
        require_root("The FTP test server")
        self.host = "127.0.0.1"
        self.port = 0
        self.user = user
        self.password = password or "ftp-" + secrets.token_urlsafe(12)
        self.ca = ca if tls else None
        self.tls_required = tls_required
        if tls_required and self.ca is None:
            raise ValueError("tls_required needs a CA (and tls=True)")
        self.log_level = log_level
        self.idle_timeout = idle_timeout
        # The FTP user's Unix account has a password of its own, never used: FTP logins are virtual.
        self.root = FileServerRoot("switchboard-ftpd-", secrets.token_urlsafe(16))
        self.log_path = self.root.path / "ftpd.log"
        self.process: ManagedProcess | None = None
        data = self.root.make_own_dir("data")
        self.root.own(self._write(data / "current.csv", BILLING_CSV))

    @staticmethod
    def _write(path: Path, text: str) -> Path:
        path.write_text(text)
        return path

    @property
    def home(self) -> Path:
        """The FTP root ``/`` on disk."""
        return self.root.home

    def start(self) -> FtpServer:
        port_file = self.root.path / "port"
        port_file.unlink(missing_ok=True)
        config = {
            "user": self.user, "password": self.password, "home": str(self.home), "port_file": str(port_file),
            "uid": TEST_USER.uid, "gid": TEST_USER.gid, "groups": [TEST_USER.gid, TEST_USER.extra_gid],
            "log_level": self.log_level, "idle_timeout": self.idle_timeout,
        }
        if self.ca is not None:
            certificate = self.ca.issue_server("ftpd-server")
            config.update(certfile=str(certificate.chain_path), keyfile=str(certificate.key_path),
                          tls_control_required=self.tls_required, tls_data_required=self.tls_required)
        config_path = self.root.path / "ftpd.json"
        config_path.write_text(json.dumps(config))
        config_path.chmod(0o600)  # it holds the password
        # -I: no script directory on sys.path, so a module here can never shadow one pyftpdlib imports.
        argv = self.root.namespace_argv([sys.executable, "-I", str(MAIN), str(config_path)])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = ManagedProcess(argv, env=env, log_path=self.log_path).start()
        self.port = int(wait_for(lambda: self._port(port_file), START_TIMEOUT,
                                 message=lambda: self.process.log_tail() if self.process else ""))
        return self

    def _port(self, port_file: Path) -> str:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"The FTP server exited with {self.process.poll()}: {self.process.log_tail()}")
        return port_file.read_text() if port_file.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self) -> None:
        self.stop()
        self.root.remove()

    def __enter__(self) -> FtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
