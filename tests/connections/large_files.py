"""Large random files for the SFTP and FTP test servers' transfer tests, and their digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LARGE = 100 * 1024 * 1024  # the size the transfer benchmarks use


def large_file(path: Path, size: int = LARGE) -> str:
    """Write ``size`` random bytes (incompressible, in 1 MiB blocks) to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
