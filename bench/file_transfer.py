"""SFTP and FTP transfer throughput through the connection API against the plain client library.

One loopback server of each kind, the test suite's own (``tests/servers/sshd.py``: OpenSSH's
sshd; ``tests/servers/ftpd.py``: pyftpdlib in a process of its own), and one random,
incompressible file of ``BENCH_FILE_MB`` (100) MiB. Each round uploads and downloads the file
four ways, interleaved so that a slower moment of the machine hits both sides alike:

* SFTP, ours: ``SftpClient.upload`` (a temporary name, then posix-rename, times and mode kept)
  and ``SftpClient.download`` (times and mode kept), as ``self.out.sftp[name].conn`` does them;
* SFTP, baseline: paramiko's ``SFTPClient.put`` and ``get`` on an ``SSHClient`` of its own;
* FTP, ours: ``FtpClient.upload`` (a temporary name, then RNFR/RNTO) and ``download``;
* FTP, baseline: ftplib's ``storbinary`` / ``retrbinary`` with the same block size (256 KiB).

Printed: the median MB/s of ``BENCH_FILE_ROUNDS`` (6) rounds (which side goes first alternates)
for each, and ours / baseline per protocol and direction; the target is at least 0.9 for each.
Every transfer is checked (its size, and the SHA-256 of one download a round).

    .venv/bin/python bench/file_transfer.py
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

MIB = common.env_int("BENCH_FILE_MB", 100)
ROUNDS = common.env_int("BENCH_FILE_ROUNDS", 1 if os.environ.get("BENCH_SMOKE") else 6)
TARGET = 0.9


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _timed(work: Callable[[], object], size: int) -> float:
    started = time.perf_counter()
    work()
    return size / (1 << 20) / (time.perf_counter() - started)


def main() -> int:
    common.setup_django()
    from connections.ftp import BLOCK_SIZE, FtpClient, FtpSettings
    from connections.sftp import SftpClient, SftpSettings
    from connections.sftp_parsing import parse_host_keys
    from tests.connections.large_files import large_file
    from tests.servers.ftpd import FtpServer
    from tests.servers.sshd import SshServer
    from tests.servers.testca import ThrowawayCA

    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-files-"))
    local = work / "payload.bin"
    digest = large_file(local, MIB << 20)
    size = local.stat().st_size
    down = work / "down.bin"
    results: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with SshServer(log_level="ERROR") as sshd, FtpServer(ThrowawayCA(work / "ca"), log_level="WARNING") as ftpd:
        sftp_dir = sshd.root.make_own_dir("bench")
        ftp_dir = "/" + ftpd.root.make_own_dir("bench").name
        ours_sftp = SftpClient(SftpSettings(
            "bench", sshd.host, sshd.port, sshd.username, sshd.password,
            host_keys=tuple(parse_host_keys(f"{sshd.host_key.get_name()} {sshd.host_key.get_base64()}"))))
        plain_ssh = sshd.connect()
        plain_sftp = plain_ssh.open_sftp()
        ours_ftp = FtpClient(FtpSettings("bench", ftpd.host, ftpd.port, ftpd.user, ftpd.password))
        plain_ftp = ftplib.FTP()  # noqa: S321 - the loopback test server's plain FTP is the baseline
        plain_ftp.connect(ftpd.host, ftpd.port, timeout=60)
        plain_ftp.login(ftpd.user, ftpd.password)
        try:
            # Logged in before timing, as a service finds them (the pools are warm after the first use).
            ours_sftp.list(str(sftp_dir))
            ours_ftp.listdir(ftp_dir)
            for round_no in range(ROUNDS):
                print(f"round {round_no + 1}/{ROUNDS}", flush=True)
                target = f"{sftp_dir}/up-{round_no}.bin"
                remote = f"{ftp_dir}/up-{round_no}.bin"

                def plain_store(r: str = remote) -> None:
                    with local.open("rb") as source:
                        plain_ftp.storbinary(f"STOR {r}.plain", source, BLOCK_SIZE)

                def plain_fetch(r: str = remote) -> None:
                    with down.open("wb") as sink:
                        plain_ftp.retrbinary(f"RETR {r}.plain", sink.write, BLOCK_SIZE)

                pairs = [
                    (("sftp upload ours", lambda t=target: ours_sftp.upload(str(local), t)),
                     ("sftp upload paramiko", lambda t=target: plain_sftp.put(str(local), t + ".plain"))),
                    (("sftp download ours", lambda t=target: ours_sftp.download(t, str(down))),
                     ("sftp download paramiko", lambda t=target: plain_sftp.get(t + ".plain", str(down)))),
                    (("ftp upload ours", lambda r=remote: ours_ftp.upload(str(local), r)),
                     ("ftp upload ftplib", plain_store)),
                    (("ftp download ours", lambda r=remote: ours_ftp.download(r, str(down))),
                     ("ftp download ftplib", plain_fetch)),
                ]
                for pair in pairs:
                    # Which side goes first alternates by round: the first transfer after a delete can
                    # meet the server's disk still writing back the round before.
                    for name, transfer in (pair if round_no % 2 == 0 else pair[::-1]):
                        record(name, _timed(transfer, size))
                        if "download" in name:
                            assert down.stat().st_size == size
                ours_ftp.download(remote, str(down))
                assert _digest(down) == digest
                for name in (target, target + ".plain"):
                    plain_sftp.remove(name)
                ours_ftp.remove(remote)
                plain_ftp.delete(remote + ".plain")
        finally:
            ours_sftp.close()
            plain_sftp.close()
            plain_ssh.close()
            ours_ftp.close()
            plain_ftp.close()
            shutil.rmtree(work, ignore_errors=True)

    rows, ratios = [], []
    for protocol, baseline in (("sftp", "paramiko"), ("ftp", "ftplib")):
        for direction in ("upload", "download"):
            ours = common.median(results[f"{protocol} {direction} ours"])
            plain = common.median(results[f"{protocol} {direction} {baseline}"])
            ratio = ours / plain
            ratios.append((f"{protocol} {direction}", ratio))
            rows.append([f"{protocol.upper()} {direction}", f"{ours:.1f}", f"{plain:.1f} ({baseline})",
                         f"{ratio:.2f}", common.verdict(ratio >= TARGET)])
    print()
    print(f"{MIB} MiB file, {ROUNDS} rounds, median MB/s (MiB/s)")
    print(common.table(["transfer", "ours", "baseline", "ours/baseline", f"target >= {TARGET}"], rows))
    worst_name, worst = min(ratios, key=lambda item: item[1])
    summary = ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios)
    print(common.result_line("file_transfer", f"ours/plain library: {summary} (lowest {worst_name})",
                             worst >= TARGET))
    return 0


if __name__ == "__main__":
    sys.exit(main())
