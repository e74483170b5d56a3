"""The pyftpdlib test server (for FTP and FTPS connections), driven with ftplib.

The other directory servers are in test_directory_servers.py and test_directory_servers_ssh.py.
Nothing here is mocked; the server is a real process on 127.0.0.1.
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.connections.large_files import LARGE, large_file, sha256
from tests.servers.ftpd import BILLING_CSV, FtpServer
from tests.servers.sandbox import FULL_DISK_BYTES, TEST_USER
from tests.servers.testca import ThrowawayCA

# --- pyftpdlib ----------------------------------------------------------------------------------------


def ftp_login(server: FtpServer, *, passive: bool = True) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=10)
    ftp.login(server.user, server.password)
    ftp.set_pasv(passive)
    return ftp


def ftps_login(server: FtpServer, ca_path: Path) -> ftplib.FTP_TLS:
    ftps = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(ca_path)))
    ftps.connect(server.host, server.port, timeout=10)
    ftps.auth()
    ftps.login(server.user, server.password)
    ftps.prot_p()
    return ftps


def retrieve(ftp: ftplib.FTP, path: str) -> bytes:
    buffer = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buffer.write)
    return buffer.getvalue()


def test_the_billing_user_logs_in_and_downloads_the_current_csv(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    assert ftp.getwelcome().startswith("220 ")
    assert "current.csv" in ftp.nlst("/data")
    assert retrieve(ftp, "/data/current.csv").decode() == BILLING_CSV
    facts = dict(ftp.mlsd("/data"))["current.csv"]
    assert facts["type"] == "file" and int(facts["size"]) == len(BILLING_CSV)
    ftp.voidcmd("TYPE I")  # SIZE is refused in ASCII mode, where the size on the wire may differ
    assert ftp.size("/data/current.csv") == len(BILLING_CSV)
    ftp.quit()


def test_a_wrong_ftp_password_is_refused(ftpd: FtpServer) -> None:
    ftp = ftplib.FTP()
    ftp.connect(ftpd.host, ftpd.port, timeout=10)
    # pyftpdlib waits 3 s before this answer, as a brake on password guessing.
    with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed"):
        ftp.login(ftpd.user, ftpd.password + "x")
    ftp.close()


def test_ftp_stores_lists_renames_and_deletes(ftpd: FtpServer, ftp_dir: str) -> None:
    ftp = ftp_login(ftpd)
    ftp.storbinary(f"STOR {ftp_dir}/invoice.txt", io.BytesIO(b"INV-1\n"))
    assert (ftpd.home / ftp_dir[1:] / "invoice.txt").stat().st_uid == TEST_USER.uid
    assert ftp.mkd(f"{ftp_dir}/2026") == f"{ftp_dir}/2026"
    ftp.rename(f"{ftp_dir}/invoice.txt", f"{ftp_dir}/2026/invoice.txt")
    assert ftp.nlst(f"{ftp_dir}/2026") == ["invoice.txt"]  # pyftpdlib's NLST names are relative to the directory
    listing: list[str] = []
    ftp.retrlines(f"LIST {ftp_dir}/2026", listing.append)
    assert len(listing) == 1 and listing[0].endswith(" invoice.txt") and TEST_USER.name in listing[0]
    assert retrieve(ftp, f"{ftp_dir}/2026/invoice.txt") == b"INV-1\n"
    with pytest.raises(ftplib.error_perm, match=r"^550"):  # not empty
        ftp.rmd(f"{ftp_dir}/2026")
    ftp.delete(f"{ftp_dir}/2026/invoice.txt")
    ftp.rmd(f"{ftp_dir}/2026")
    assert ftp.nlst(ftp_dir) == []
    ftp.quit()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_transfers_work_in_passive_and_active_mode(ftpd: FtpServer, ftp_dir: str, passive: bool) -> None:
    ftp = ftp_login(ftpd, passive=passive)
    replies: list[tuple[str, str]] = []

    def recording(method: Callable[[str], str]) -> Callable[[str], str]:
        def call(command: str) -> str:
            reply = method(command)
            replies.append((command.split()[0], reply[:3]))
            return reply

        return call

    # ftplib sends PASV (and STOR, RETR) through sendcmd, and PORT through voidcmd.
    ftp.sendcmd = recording(ftp.sendcmd)  # type: ignore[method-assign]
    ftp.voidcmd = recording(ftp.voidcmd)  # type: ignore[method-assign]
    ftp.storbinary(f"STOR {ftp_dir}/mode.bin", io.BytesIO(b"\x00" * 70000))
    assert retrieve(ftp, f"{ftp_dir}/mode.bin") == b"\x00" * 70000
    ftp.quit()
    # Passive: the server opens a port and says where (227); active: it accepts our PORT (200) and connects back.
    expected = ("PASV", "227") if passive else ("PORT", "200")
    assert replies.count(expected) == 2, replies


def test_ftps_with_the_ca_bundle_protects_commands_and_data(ftpd: FtpServer, ftp_dir: str,
                                                            directory_ca: ThrowawayCA) -> None:
    ftps = ftps_login(ftpd, directory_ca.ca_path)
    assert isinstance(ftps.sock, ssl.SSLSocket)
    ftps.storbinary(f"STOR {ftp_dir}/secret.csv", io.BytesIO(b"tls,data\n"))
    assert retrieve(ftps, f"{ftp_dir}/secret.csv") == b"tls,data\n"
    assert retrieve(ftps, "/data/current.csv").decode() == BILLING_CSV
    ftps.quit()


def test_an_ftps_client_that_trusts_another_ca_refuses_the_server(ftpd: FtpServer, tmp_path: Path) -> None:
    stranger = ThrowawayCA(tmp_path, name="Some Other CA")
    ftps = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(stranger.ca_path)))
    ftps.connect(ftpd.host, ftpd.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        ftps.auth()
    ftps.close()


def test_a_server_that_requires_tls_refuses_a_plain_login(ftpd_factory, directory_ca: ThrowawayCA) -> None:
    server = ftpd_factory(tls_required=True)
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
        ftp.login(server.user, server.password)
    ftp.close()
    ftps_login(server, directory_ca.ca_path).quit()


def test_ftp_refuses_what_the_user_may_not_touch(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    assert ftp.nlst("/readonly") == ["notice.txt"]  # readable, just not writable
    for command in ("STOR /readonly/new.txt", "STOR /locked/new.txt"):
        with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
            ftp.storbinary(command, io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
        ftp.delete("/readonly/notice.txt")
    with pytest.raises(ftplib.error_perm, match=r"^550 Permission denied"):
        ftp.nlst("/locked")
    ftp.quit()


def aborted_store_reply(ftp: ftplib.FTP, command: str, data: bytes) -> str:
    """The server's reply to a STOR it aborts, however the client learns of it.

    The server closes the data connection at the failure and then replies. If the client had
    already sent everything, ftplib reads the reply and raises it; if it was still sending, the
    send breaks off (broken pipe, reset) and the reply waits on the control connection, where
    a client must read it before its next command. Which one happens is a race, so both count.
    """
    try:
        ftp.storbinary(command, io.BytesIO(data))
    except ftplib.error_temp as reply:
        return str(reply)
    except (BrokenPipeError, ConnectionResetError):
        try:
            ftp.getresp()
        except ftplib.error_temp as reply:
            return str(reply)
    raise AssertionError(f"{command} did not fail")


def test_a_full_disk_aborts_an_upload_with_the_reason(ftpd: FtpServer) -> None:
    ftp = ftp_login(ftpd)
    path = f"/full/too-big-{os.getpid()}.bin"
    try:
        reply = aborted_store_reply(ftp, f"STOR {path}", b"\xff" * 2 * FULL_DISK_BYTES)
        assert reply == "426 No space left on device; transfer aborted."
        assert ftp.voidcmd("NOOP").startswith("200")  # the session goes on
    finally:
        ftp.delete(path)
        ftp.quit()


def test_a_large_file_makes_the_ftp_round_trip_intact(ftpd: FtpServer, ftp_dir: str, tmp_path: Path) -> None:
    digest = large_file(tmp_path / "large.bin")
    ftp = ftp_login(ftpd)
    with (tmp_path / "large.bin").open("rb") as source:
        ftp.storbinary(f"STOR {ftp_dir}/large.bin", source, blocksize=256 * 1024)
    (tmp_path / "large.bin").unlink()
    with (tmp_path / "back.bin").open("wb") as target:
        ftp.retrbinary(f"RETR {ftp_dir}/large.bin", target.write, blocksize=256 * 1024)
    ftp.quit()
    assert (tmp_path / "back.bin").stat().st_size == LARGE and sha256(tmp_path / "back.bin") == digest

