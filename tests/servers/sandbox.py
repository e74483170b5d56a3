"""What the SFTP and FTP test servers share: a Unix test user, its home tree, a private mount namespace.

Both file servers need what a real file server has: a user account that is not root (so the
kernel, not the server, says "Permission denied"), directories that user may not write or
enter, and a filesystem that runs out of space. None of that may change the machine:

* **The test user exists only inside the server's mount namespace.** The server runs under
  ``unshare --mount`` (we run as root, as this project's machines and CI do), where copies of
  ``/etc/passwd`` and ``/etc/group`` with one more user and group are bind-mounted over the
  real ones. sshd looks the user up there (its password hash sits in the copied passwd line,
  so the real ``/etc/shadow`` is neither read nor copied: sshd falls back to the passwd field
  for a user shadow does not know). The machine's own files and users never change.
* **A full disk is a real small filesystem**: a 1 MiB tmpfs mounted on ``home/full`` inside
  that namespace, so writes there fail with ENOSPC ("No space left on device") exactly as on
  a full volume, and disappear with the server.
* **Permission denied is the kernel's**: ``home/readonly`` (root's, 0755: listable, not
  writable) and ``home/locked`` (root's, 0700: not even listable), checked against the test
  user's ids. sshd switches to that user for a session; the FTP server switches its effective
  ids around each file operation (pyftpdlib's impersonation hook).

The tree lives in a directory of its own under the system temporary directory (not pytest's
``tmp_path``, whose ``pytest-of-root`` parent is 0700 and so closed to the test user).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers.procs import REPO_ROOT

INSTALL_SCRIPT = REPO_ROOT / "tests" / "servers" / "install_debian_packages.sh"
#: Debian packages the directory and file-server tests run, and a file each one installs.
DEBIAN_PACKAGES = {
    "slapd": "/usr/sbin/slapd",
    "ldap-utils": "/usr/bin/ldapsearch",
    "openssh-server": "/usr/sbin/sshd",
    "openssh-client": "/usr/bin/sftp",
}
FULL_DISK_BYTES = 1024 * 1024  # home/full: big enough for a few small files, far too small for a "large" one


@dataclass(frozen=True)
class UnixUser:
    """The file servers' login user; it exists only inside the servers' mount namespaces."""

    name: str
    uid: int
    gid: int
    group: str
    #: A second group the user belongs to, so ``chgrp`` to it succeeds (a user may only give
    #: files to groups it is a member of); ``chown`` to anybody else fails as it should.
    extra_group: str
    extra_gid: int


# Ids far above the range Debian gives to people and services, so no real account is shadowed.
TEST_USER = UnixUser(name="sbfiles", uid=48213, gid=48213, group="sbfiles", extra_group="sbshare",
                     extra_gid=48214)

_install_lock = threading.Lock()


def ensure_debian_packages(*packages: str) -> None:
    """Install the given Debian packages when one of their files is missing, as ``make test`` does.

    ``make test`` installs them before pytest starts; this covers a plain ``pytest`` run on a
    machine without them. It runs the same script (apt waits for dpkg's lock, so two xdist
    workers arriving together are fine) and fails the fixture with apt's own words if it cannot.
    """
    missing = [name for name in packages if not Path(DEBIAN_PACKAGES[name]).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"Debian packages {missing} are missing and only root can install them: "
                           "run `make test-servers` (it uses sudo)")
    with _install_lock:
        done = subprocess.run(["/bin/bash", str(INSTALL_SCRIPT), *missing], capture_output=True, text=True,
                              timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Could not install {missing}: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def require_root(what: str) -> None:
    """The file servers need root for their mount namespace; say so plainly instead of failing oddly later."""
    if os.geteuid() != 0:
        raise RuntimeError(f"{what} runs in a private mount namespace (unshare --mount), which needs root; "
                           "this project's machines and CI run the tests as root")


def password_hash(password: str) -> str:
    """A SHA-512 crypt(3) hash (``$6$...``), made by ``openssl passwd`` (sshd checks it with crypt)."""
    done = subprocess.run(["/usr/bin/openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()


class FileServerRoot:
    """A private directory tree: ``etc/`` (passwd and group copies) and ``home/`` (the user's files).

    ``home`` holds ``readonly/`` with ``notice.txt`` (root's, 0755), ``locked/`` with
    ``secret.txt`` (root's, 0700) and ``full/`` (the tmpfs mount point), each owned and moded
    as the docstring of this module explains. ``remove()`` deletes the tree.
    """

    def __init__(self, prefix: str, password: str, user: UnixUser = TEST_USER) -> None:
        self.user = user
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.path.chmod(0o755)  # the test user must be able to walk to its home
        self.etc = self.path / "etc"
        self.home = self.path / "home"
        self.etc.mkdir()
        self.home.mkdir()
        os.chown(self.home, user.uid, user.gid)
        readonly, locked, full = self.home / "readonly", self.home / "locked", self.home / "full"
        readonly.mkdir(mode=0o755)
        (readonly / "notice.txt").write_text("Read me, but do not write here.\n")
        locked.mkdir()
        locked.chmod(0o700)
        (locked / "secret.txt").write_text("Nobody but root reads this.\n")
        full.mkdir()
        os.chown(full, user.uid, user.gid)
        self._write_accounts(password)

    @property
    def readonly(self) -> Path:
        return self.home / "readonly"

    @property
    def locked(self) -> Path:
        return self.home / "locked"

    @property
    def full(self) -> Path:
        return self.home / "full"

    def _write_accounts(self, password: str) -> None:
        user = self.user
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        for line in passwd.splitlines():
            name, _, uid = [*line.split(":"), "", ""][:3]
            if name == user.name or uid == str(user.uid):
                raise RuntimeError(f"/etc/passwd already has {line!r}; pick other ids for the test user")
        passwd = passwd.rstrip("\n") + (
            f"\n{user.name}:{password_hash(password)}:{user.uid}:{user.gid}:Switchboard file-server tests:"
            f"{self.home}:/bin/sh\n")
        group = group.rstrip("\n") + (f"\n{user.group}:x:{user.gid}:\n"
                                      f"{user.extra_group}:x:{user.extra_gid}:{user.name}\n")
        (self.etc / "passwd").write_text(passwd)
        (self.etc / "group").write_text(group)
        (self.etc / "passwd").chmod(0o644)
        (self.etc / "group").chmod(0o644)

    def make_own_dir(self, name: str) -> Path:
        """``home/<name>``, created for one test and owned by the test user (so it may write there)."""
        path = self.home / name
        path.mkdir()
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def own(self, path: Path) -> Path:
        """Give a file or directory that the test set up as root to the test user; returns ``path``."""
        os.chown(path, self.user.uid, self.user.gid)
        return path

    def namespace_argv(self, argv: Sequence[str], *, full_bytes: int = FULL_DISK_BYTES) -> list[str]:
        """``argv`` wrapped to run in a new mount namespace with the accounts and the tmpfs mounted.

        ``unshare`` execs the shell and the shell execs the server, so the server keeps the pid
        that ``ManagedProcess`` started, and the namespace (with its mounts) ends with its last
        process. Propagation is private, so none of these mounts is seen outside.
        """
        user = self.user
        script = "\n".join([
            "set -e",
            f"mount --bind {shlex.quote(str(self.etc / 'passwd'))} /etc/passwd",
            f"mount --bind {shlex.quote(str(self.etc / 'group'))} /etc/group",
            f"mount -t tmpfs -o size={full_bytes},mode=0755,uid={user.uid},gid={user.gid} switchboard-full "
            f"{shlex.quote(str(self.full))}",
            "exec " + shlex.join(argv),
        ])
        return ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
