"""The FTP test server's process: pyftpdlib, configured from the JSON file named on the command line.

``tests/servers/ftpd.py`` starts this as ``python ftpd_main.py CONFIG`` inside the private
mount namespace of ``tests/servers/sandbox.py``. It is a plain script (no Django, no
``tests`` package import), so nothing but pyftpdlib and pyOpenSSL loads in the server.

The server binds port 0 and writes the port the kernel gave it to ``port_file`` (atomically,
by renaming a temporary file): no window in which another process could take a port chosen
in advance. The process stays root, which it needs to switch ids, and does every file
operation of a session as the test user: pyftpdlib wraps each one in the authorizer's
``impersonate_user`` / ``terminate_impersonation``, and this authorizer switches the
effective uid, gid and groups there. So the kernel decides "Permission denied" for the
test user, as on a real server that runs sessions as their users.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

# Every permission pyftpdlib knows: list, change directory, retrieve, append, delete, rename,
# make directory, store, chmod, set mtime. What the user may really do is then up to the kernel.
ALL_PERMISSIONS = "elradfmwMT"


class ImpersonatingAuthorizer(DummyAuthorizer):
    """Virtual FTP users whose file operations run with the ids of one Unix user."""

    def __init__(self, uid: int, gid: int, groups: list[int]) -> None:
        super().__init__()
        self.uid, self.gid, self.groups = uid, gid, groups
        self._root_groups = os.getgroups()

    def impersonate_user(self, username: str, password: str) -> None:
        # Groups and gid first: once the euid is not 0 they can no longer be changed.
        os.setgroups(self.groups)
        os.setegid(self.gid)
        os.seteuid(self.uid)

    def terminate_impersonation(self, username: str) -> None:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(self._root_groups)


class FileErrorReply:
    """Answer a transfer whose file write failed (a full disk) with "426 <the OS's reason>; transfer aborted."

    pyftpdlib 2.2.0 means to, but its plain data handler loses the reason (it reads ``errno``
    from a wrapper exception that has none and says "426 None") and its TLS data handler, which
    an FTPS-capable server uses for plain data connections too, closes the connection without
    any reply, so the client waits until it times out. Both then close the file, whose
    buffered rest fails to flush on the same full disk, and that second error can end the
    server. A real server (vsftpd, ProFTPD) answers at once and carries on, and so does this
    one: the reason comes from the ``OSError`` the write raised; the file is closed with that
    second error expected; the data connection is closed the way pyftpdlib's TLS handler
    closes it after an error (without a TLS shutdown), which sends the reply.
    """

    def handle_error(self) -> None:
        cause = getattr(sys.exc_info()[1], "__cause__", None)
        file_obj = getattr(self, "file_obj", None)
        if not (isinstance(cause, OSError) and cause.errno and file_obj is not None):
            super().handle_error()  # not a failed file write: pyftpdlib's own handling
            return
        self._resp = (f"426 {os.strerror(cause.errno)}; transfer aborted.", logging.getLogger("pyftpdlib").warning)
        try:
            file_obj.close()  # flushing the buffered rest fails too; the descriptor is closed all the same
        except OSError:
            pass
        try:
            DTPHandler.close(self)
        except Exception:
            logging.getLogger("pyftpdlib").exception("Closing the data connection after a failed write")


class PlainDataHandler(FileErrorReply, DTPHandler):
    pass


class TLSDataHandler(FileErrorReply, TLS_DTPHandler):
    pass


def build_server(config: dict[str, Any]) -> FTPServer:
    authorizer = ImpersonatingAuthorizer(config["uid"], config["gid"], config["groups"])
    authorizer.add_user(config["user"], config["password"], config["home"], perm=ALL_PERMISSIONS,
                        msg_login="Welcome to Switchboard's test FTP server.", msg_quit="Goodbye.")
    handler: type[FTPHandler]
    if config.get("certfile"):
        handler = type("Handler", (TLS_FTPHandler,), {
            "certfile": config["certfile"],
            "keyfile": config["keyfile"],
            "tls_control_required": config.get("tls_control_required", False),
            "tls_data_required": config.get("tls_data_required", False),
            "dtp_handler": TLSDataHandler,
        })
    else:
        handler = type("Handler", (FTPHandler,), {"dtp_handler": PlainDataHandler})
    handler.authorizer = authorizer
    handler.banner = "Switchboard test FTP server (pyftpdlib) ready."
    handler.timeout = config.get("idle_timeout", 120)  # an abandoned session does not outlive a test run by much
    handler.permit_foreign_addresses = False
    server = FTPServer(("127.0.0.1", 0), handler)
    server.max_cons = 256
    return server


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    logging.basicConfig(level=config.get("log_level", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    server = build_server(config)
    port_file = Path(config["port_file"])
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.address[1]))
    temporary.rename(port_file)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever(timeout=0.5)


if __name__ == "__main__":
    main(sys.argv[1])
