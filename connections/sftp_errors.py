"""The exceptions of SFTP connections (``connections.sftp``); each message names the connection and the path."""

from __future__ import annotations

import logging

from integration.errors import ServiceUnavailable, SwitchboardError


class SftpError(SwitchboardError):
    """An SFTP operation failed; the message names the connection, the action and the path."""


class SftpNotFound(SftpError):
    status_code = 404


class SftpPermissionDenied(SftpError):
    status_code = 403


class SftpPathTypeError(SftpError):
    """The path exists but is of another kind than the method needs."""


class SftpExists(SftpError):
    """The target exists and the call did not ask to overwrite it."""


class SftpDiskFull(SftpError):
    status_code = 507


class SftpUnavailable(ServiceUnavailable):
    """The server cannot be reached or refused the login (503)."""


class SftpHostKeyError(SftpUnavailable):
    """The server's host key is not one the connection knows."""


def wire_log_level(level: int) -> int:
    """A connection's log level (0-4) as the level of paramiko's logger: 0 warnings, 1 info, 2+ debug."""
    return {0: logging.WARNING, 1: logging.INFO}.get(level, logging.DEBUG)
