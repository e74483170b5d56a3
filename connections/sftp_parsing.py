"""The raw text of SFTP connections, parsed: scripts of SFTP commands, extra SSH options, host and private keys.

A *script* is what the admin's shell and ``execute()`` take: OpenSSH ``sftp`` batch commands,
one a line (``ls -la /remote/path``, ``rename a b``...). Arguments split as a POSIX shell
splits them (quotes for spaces); ``#`` starts a comment line; a leading ``-`` lets the script go
on when that command fails, as in ``sftp -b``. ``parse_script`` checks every line before
anything runs, so a script with a typo on line 7 changes nothing on the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

MAX_SCRIPT_LINES = 500

#: command -> (flags it accepts, fewest arguments, most arguments)
COMMANDS: dict[str, tuple[str, int, int]] = {
    "ls": ("la1", 0, 1),
    "cd": ("", 1, 1),
    "pwd": ("", 0, 0),
    "mkdir": ("p", 1, 1),
    "rmdir": ("", 1, 1),
    "rm": ("r", 1, 1),
    "rename": ("", 2, 2),
    "ln": ("s", 2, 2),
    "symlink": ("", 2, 2),
    "chmod": ("", 2, 2),
    "chown": ("", 2, 2),
    "chgrp": ("", 2, 2),
    "get": ("r", 1, 2),
    "put": ("r", 1, 2),
    "df": ("", 0, 1),
    "stat": ("", 1, 1),
    "help": ("", 0, 0),
    "version": ("", 0, 0),
}
#: Commands that touch files on Switchboard's own machine, which the admin's shell refuses.
LOCAL_COMMANDS = frozenset({"get", "put"})


@dataclass(frozen=True)
class Command:
    line_no: int
    text: str
    name: str
    flags: frozenset[str] = field(default_factory=frozenset)
    args: tuple[str, ...] = ()
    ignore_errors: bool = False


def parse_script(script: str) -> list[Command]:
    """Every command of ``script``; ``ValueError`` naming the first bad line."""
    if "\0" in script:
        raise ValueError("The script contains a NUL character.")
    lines = script.splitlines()
    if len(lines) > MAX_SCRIPT_LINES:
        raise ValueError(f"At most {MAX_SCRIPT_LINES} lines a script.")
    commands: list[Command] = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        ignore = text.startswith("-")
        body = text[1:].lstrip() if ignore else text
        try:
            words = shlex.split(body)
        except ValueError as exc:
            raise ValueError(f"Line {number}: {exc} in `{text[:100]}`") from None
        if not words:
            raise ValueError(f"Line {number}: no command after `-`.")
        name, rest = words[0], words[1:]
        if name not in COMMANDS:
            raise ValueError(f"Line {number}: unknown command `{name[:40]}` (known: {', '.join(sorted(COMMANDS))}).")
        allowed, fewest, most = COMMANDS[name]
        flags: set[str] = set()
        while rest and rest[0].startswith("-") and len(rest[0]) > 1 and rest[0] != "--":
            for flag in rest.pop(0)[1:]:
                if flag not in allowed:
                    raise ValueError(f"Line {number}: `{name}` has no option -{flag}.")
                flags.add(flag)
        if rest and rest[0] == "--":
            rest = rest[1:]
        if not fewest <= len(rest) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            raise ValueError(f"Line {number}: `{name}` takes {wanted} argument(s), got {len(rest)}.")
        commands.append(Command(number, text, name, frozenset(flags), tuple(rest), ignore))
    return commands


# --- Extra SSH options ------------------------------------------------------------------------------

#: The options of ``man ssh_config`` that a paramiko transport can honour, with their value kinds.
SSH_OPTIONS: dict[str, str] = {
    "Compression": "yes/no",
    "ConnectTimeout": "seconds",
    "ServerAliveInterval": "seconds",
    "RekeyLimit": "bytes",
}


def parse_ssh_options(text: str) -> dict[str, str | int | bool]:
    """``Name=value`` (or ``Name value``) lines into typed values; ``ValueError`` naming the bad line."""
    found: dict[str, str | int | bool] = {}
    canonical = {name.lower(): name for name in SSH_OPTIONS}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(" ")
        key, value = key.strip(), value.strip()
        name = canonical.get(key.lower())
        if name is None:
            raise ValueError(f"Line {number}: unknown option `{key[:40]}` (supported: {', '.join(SSH_OPTIONS)}).")
        kind = SSH_OPTIONS[name]
        if kind == "yes/no":
            if value.lower() not in ("yes", "no"):
                raise ValueError(f"Line {number}: {name} is yes or no.")
            found[name] = value.lower() == "yes"
        else:
            if not value.isascii() or not value.isdigit() or not 0 <= int(value) <= 2**40:
                raise ValueError(f"Line {number}: {name} is a whole number of {kind}.")
            found[name] = int(value)
    return found


# --- Keys ---------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    import paramiko

_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def parse_host_keys(text: str) -> list[paramiko.PKey]:
    """Public keys from ``ssh-keyscan`` / known_hosts lines (host names, if present, are ignored)."""
    import paramiko  # here: the models validate keys with this module, and paramiko costs ~0.15 s to import

    keys: list[paramiko.PKey] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        positions = [i for i, word in enumerate(words) if word in _KEY_TYPES]
        if not positions or positions[0] + 1 >= len(words):
            raise ValueError(f"Line {number}: expected `<type> <base64 key>` with a type among "
                             f"{', '.join(_KEY_TYPES)}.")
        key_type, blob = words[positions[0]], words[positions[0] + 1]
        try:
            data = base64.b64decode(blob, validate=True)
            key = paramiko.PKey.from_type_string(key_type, data)
        except (binascii.Error, ValueError, paramiko.SSHException, TypeError, IndexError):
            raise ValueError(f"Line {number}: the {key_type} key cannot be read.") from None
        keys.append(key)
    return keys


def load_private_key(text: str) -> paramiko.PKey:
    """A private key in OpenSSH or PEM form (ed25519, ECDSA or RSA, no passphrase); ``ValueError`` otherwise."""
    import paramiko  # see parse_host_keys

    if "-----BEGIN " not in text:
        raise ValueError("Paste the private key in OpenSSH or PEM form (-----BEGIN ... PRIVATE KEY-----).")
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise ValueError("The private key is protected by a passphrase; store it without one.") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError, AssertionError):
            continue
    raise ValueError("The private key cannot be read (ed25519, ECDSA or RSA keys are supported).")


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:... as OpenSSH prints it."""
    return key.fingerprint
