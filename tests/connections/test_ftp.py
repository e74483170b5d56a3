"""FTP and FTPS connections against pyftpdlib: the seed's billing flow, every method, FTPS, bad input.

The server is a real pyftpdlib process on 127.0.0.1 (tests/servers/ftpd.py); each test writes in
a directory of its own (``ftp_dir``), which is ``ftpd.home / ftp_dir[1:]`` on disk.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connections.ftp import FtpClient, FtpDiskFull, FtpError, FtpNotFound, FtpPermissionDenied, FtpUnavailable
from connections.models import FtpConnection
from integration import snapshot
from integration.invoke import invoke
from tests.connections.large_files import large_file, sha256
from tests.connections.outgoing_fixtures import make_rest
from tests.servers.ftpd import BILLING_CSV, FtpServer
from tests.servers.http_handles import RestBackend
from tests.servers.sandbox import FULL_DISK_BYTES


@pytest.fixture
def ftp_row(db: None, ftpd: FtpServer) -> Callable[..., FtpConnection]:
    """``ftp_row(**fields)``: a saved FTP connection ("Billings") to the session's pyftpdlib."""

    def _make(name: str = "Billings", password: str | None = None, server: FtpServer | None = None,
              **fields: Any) -> FtpConnection:
        server = server or ftpd
        fields.setdefault("host", server.host)
        fields.setdefault("port", server.port)
        fields.setdefault("user", server.user)
        fields.setdefault("timeout", 5.0)
        row = FtpConnection(name=name, **fields)
        row.set_password(password or server.password)
        row.save()
        return row

    return _make


@pytest.fixture
def billings(ftp_row: Callable[..., FtpConnection]) -> FtpClient:
    row = ftp_row()
    return snapshot.current().outgoing.get("ftp", row.name).conn


def on_disk(ftpd: FtpServer, path: str) -> Path:
    return ftpd.home / path.lstrip("/")


SERVICE = """
from integration.services import Service

class Billing(Service):
    name = "billing.fetch"

    def handle(self):
        data = self.outgoing.ftp.get("Billings").getcontents("/data/current.csv")
        names = self.out.ftp["Billings"].conn.listdir("/data")
        self.response.payload = {"csv": data.decode(), "names": names}
"""


@pytest.mark.django_db
def test_the_seeds_billing_file_is_read_through_both_spellings(ftp_row: Callable[..., FtpConnection],
                                                                deploy: Any) -> None:
    ftp_row()
    deploy("billing.py", SERVICE)
    assert invoke("billing.fetch", {}).payload == {"csv": BILLING_CSV, "names": ["current.csv"]}


def test_files_and_directories_through_every_method(billings: FtpClient, ftp_dir: str, ftpd: FtpServer,
                                                    tmp_path: Path) -> None:
    billings.makedir(f"{ftp_dir}/a/b", recursive=True)
    assert billings.isdir(f"{ftp_dir}/a/b") and not billings.isfile(f"{ftp_dir}/a/b")
    billings.makedir(f"{ftp_dir}/a", allow_recreate=True)
    billings.setcontents(f"{ftp_dir}/a/b/report.csv", "id;amount\n1;2\n")
    assert billings.getcontents(f"{ftp_dir}/a/b/report.csv") == b"id;amount\n1;2\n"
    assert billings.getcontents(f"{ftp_dir}/a/b/report.csv", mode="r") == "id;amount\n1;2\n"
    assert billings.exists(f"{ftp_dir}/a/b/report.csv") and not billings.exists(f"{ftp_dir}/nothing")
    assert billings.listdir(f"{ftp_dir}/a/b") == ["report.csv"]  # the temporary upload name is gone
    assert billings.getsize(f"{ftp_dir}/a/b/report.csv") == 14
    local = tmp_path / "local.bin"
    local.write_bytes(b"\x00" * 5000)
    billings.upload(str(local), f"{ftp_dir}/up.bin")
    billings.download(f"{ftp_dir}/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
    billings.rename(f"{ftp_dir}/up.bin", f"{ftp_dir}/moved.bin")
    billings.remove(f"{ftp_dir}/moved.bin")
    billings.remove(f"{ftp_dir}/a/b/report.csv")
    billings.removedir(f"{ftp_dir}/a/b")
    assert billings.listdir(ftp_dir) == ["a"]
    assert sorted(p.name for p in on_disk(ftpd, ftp_dir).iterdir()) == ["a"]


def test_a_large_file_goes_up_and_down_intact(billings: FtpClient, ftp_dir: str, ftpd: FtpServer,
                                              tmp_path: Path) -> None:
    local = tmp_path / "large.bin"
    digest = large_file(local, 32 * 1024 * 1024)
    billings.upload(str(local), f"{ftp_dir}/large.bin")
    assert sha256(on_disk(ftpd, f"{ftp_dir}/large.bin")) == digest
    billings.download(f"{ftp_dir}/large.bin", str(tmp_path / "again.bin"))
    assert sha256(tmp_path / "again.bin") == digest


def test_a_default_directory_makes_relative_paths_start_there(ftp_row: Callable[..., FtpConnection]) -> None:
    client = FtpClient.from_definition(ftp_row(name="data", default_directory="/data"))
    assert client.getcontents("current.csv") == BILLING_CSV.encode()
    assert client.listdir() == ["current.csv"]


def test_ftps_encrypts_the_session_and_checks_the_servers_certificate(
        ftp_row: Callable[..., FtpConnection], ftpd_factory: Callable[..., FtpServer], tmp_path: Path) -> None:
    strict = ftpd_factory(tls_required=True)  # refuses logins before AUTH TLS and data before PROT P
    ca = strict.ca.ca_path.read_text()
    client = FtpClient.from_definition(ftp_row(name="secure", server=strict, tls=True, tls_ca_cert=ca))
    assert client.getcontents("/data/current.csv") == BILLING_CSV.encode()
    assert client.ping().ok
    plain = FtpClient.from_definition(ftp_row(name="plain", server=strict))
    result = plain.ping()
    assert not result.ok and "the server refused the login" in result.info
    from tests.servers.testca import ThrowawayCA

    stranger = ThrowawayCA(tmp_path).ca_path.read_text()
    wrong_ca = FtpClient.from_definition(ftp_row(name="wrong-ca", server=strict, tls=True, tls_ca_cert=stranger))
    result = wrong_ca.ping()
    assert not result.ok and "TLS failed" in result.info and "CERTIFICATE_VERIFY_FAILED" in result.info


def test_active_mode_works_too(ftp_row: Callable[..., FtpConnection]) -> None:
    client = FtpClient.from_definition(ftp_row(name="active", passive=False))
    assert client.getcontents("/data/current.csv") == BILLING_CSV.encode()


# --- Bad input -----------------------------------------------------------------------------------------


def test_missing_files_permissions_and_a_full_disk_name_the_connection_and_path(billings: FtpClient,
                                                                                 ftpd: FtpServer) -> None:
    with pytest.raises(FtpNotFound, match=r"FTP connection `Billings`: cannot read `/data/missing.csv`"):
        billings.getcontents("/data/missing.csv")
    with pytest.raises(FtpPermissionDenied, match=r"cannot upload `/readonly/x.csv`: permission denied"):
        billings.setcontents("/readonly/x.csv", "x")
    with pytest.raises(FtpPermissionDenied, match=r"cannot list `/locked`"):
        billings.listdir("/locked")
    before = sorted(p.name for p in on_disk(ftpd, "/full").iterdir())
    with pytest.raises(FtpDiskFull, match=r"cannot upload `/full/big.bin`: the server's disk is full"):
        billings.setcontents("/full/big.bin", b"\xff" * (FULL_DISK_BYTES * 2))
    # Nothing partial is left, under the promised name or the temporary one.
    assert sorted(p.name for p in on_disk(ftpd, "/full").iterdir()) == before
    with pytest.raises(FtpError, match="line break"):
        billings.getcontents("/data/current.csv\r\nDELE /data/current.csv")
    assert on_disk(ftpd, "/data/current.csv").exists()


def test_a_full_disk_that_drops_the_upload_midway_is_still_a_full_disk(billings: FtpClient, ftpd: FtpServer) -> None:
    """Far more than the disk holds: the server closes the data connection while we are still sending.

    Its reason (451, no space left) then waits on the control connection; reading it is what tells
    the caller "disk full" rather than "the connection failed" (and keeps the upload from being sent
    again on a new session).
    """
    before = sorted(p.name for p in on_disk(ftpd, "/full").iterdir())
    with pytest.raises(FtpDiskFull, match=r"cannot upload `/full/huge.bin`: the server's disk is full"):
        billings.setcontents("/full/huge.bin", b"\xff" * (FULL_DISK_BYTES * 64))
    assert sorted(p.name for p in on_disk(ftpd, "/full").iterdir()) == before
    assert billings.getcontents("/data/current.csv") == BILLING_CSV.encode()  # the connection still works


def test_wrong_credentials_and_an_unreachable_server_are_clear(ftp_row: Callable[..., FtpConnection]) -> None:
    wrong = FtpClient.from_definition(ftp_row(name="wrong", password="nope"))
    with pytest.raises(FtpUnavailable, match=r"`wrong` \(ftp://127.0.0.1:\d+\): the server refused the login: 530"):
        wrong.listdir("/")
    from tests.servers.procs import free_port

    port = free_port()
    result = FtpClient.from_definition(ftp_row(name="down", port=port)).ping()
    assert not result.ok and f"ftp://127.0.0.1:{port}): cannot connect" in result.info and "refused" in result.info


def test_a_session_the_server_dropped_while_idle_is_replaced(ftp_row: Callable[..., FtpConnection],
                                                              ftpd_factory: Callable[..., FtpServer]) -> None:
    server = ftpd_factory(idle_timeout=1)
    client = FtpClient.from_definition(ftp_row(name="idle", server=server))
    assert client.exists("/data/current.csv")
    import time

    time.sleep(2.5)  # pyftpdlib closes the idle control connection (421)
    assert client.getcontents("/data/current.csv") == BILLING_CSV.encode()


def test_ping_names_the_server_and_its_welcome(billings: FtpClient, ftpd: FtpServer) -> None:
    result = billings.ping()
    assert result.ok and result.info.startswith(f"ftp://127.0.0.1:{ftpd.port}: 220")


# --- The seed's billing flow end to end: scheduler -> service -> FTP -> outgoing REST -> backend ------

# The seed's BillingHandler as written in Zato's scheduler post (only ``name`` added): no ``.conn``,
# ``plain_http`` and ``.get(name)`` spellings, the file's bytes posted as they are.
BILLING_SERVICE = """
from integration.services import Service

class BillingHandler(Service):
    name = "billing.handler"

    def handle(self):

        # Download data ..
        ftp = self.outgoing.ftp.get('Billings')
        contents = ftp.getcontents('/data/current.csv')

        # .. and send it to its recipient.
        self.outgoing.plain_http['ERP'].post(self.cid, contents)
"""


@pytest.fixture
def billing_job(ftp_row: Callable[..., FtpConnection], deploy: Any, builtins: None,
                rest_backend_basic: RestBackend) -> Callable[[], Any]:
    """The seed's setup: FTP "Billings", REST "ERP" (the backend's /echo/billings, HTTP Basic), the
    handler deployed and an hourly job for it; calling the fixture runs the job as beat would, once."""
    from datetime import timedelta

    from django.utils import timezone

    from integration.models import DeployedService
    from scheduling import jobs
    from scheduling.models import Job, JobRun
    from scheduling.tasks import run_job

    ftp_row()
    user, password = rest_backend_basic.basic_auth
    make_rest("ERP", address=rest_backend_basic.url, url_path="/echo/billings", auth_type="basic", username=user,
              password=password)
    deploy("billing_handler.py", BILLING_SERVICE)
    job = jobs.save_job(Job(name="billing", service=DeployedService.objects.get(name="billing.handler"),
                            job_type=Job.JobType.INTERVAL_BASED, minutes=60,
                            start_date=timezone.now() + timedelta(hours=1)))

    def _run() -> Any:
        run_job(job.pk, job.start_date.isoformat())  # no CID given: the run mints its own, as under beat
        return JobRun.objects.get(job=job)

    return _run


@pytest.mark.django_db
def test_a_scheduler_job_posts_the_billing_file_from_ftp_to_the_rest_backend(
        billing_job: Callable[[], Any], rest_backend_basic: RestBackend, ftpd: FtpServer) -> None:
    run = billing_job()

    assert run.status == "ok", run.error
    assert run.cid
    received = rest_backend_basic.requests("/echo/billings")
    assert len(received) == 1
    request = received[0]
    assert request["method"] == "POST" and request["status"] == 200
    assert request["headers"]["x-zato-cid"] == run.cid  # the job run's CID travelled with the post
    assert request["headers"]["authorization"].startswith("Basic ")
    # Exactly the file's bytes, and so exactly its rows.
    sent = on_disk(ftpd, "/data/current.csv").read_bytes()
    assert request["body"].encode() == sent == BILLING_CSV.encode()
    assert int(request["headers"]["content-length"]) == len(sent)
    rows = list(csv.DictReader(io.StringIO(request["body"])))
    assert [row["customer_id"] for row in rows] == ["C-1001", "C-1002", "C-1003"]
    assert rows[2] == {"customer_id": "C-1003", "period": "2026-11", "amount": "1200.00", "currency": "EUR"}


@pytest.mark.django_db
def test_a_billing_run_whose_backend_is_down_is_recorded_as_failed_with_the_connection_named(
        billing_job: Callable[[], Any], rest_backend_basic: RestBackend) -> None:
    rest_backend_basic.down()

    run = billing_job()

    assert run.status == "error"
    assert run.error.startswith("502 Outgoing REST connection `ERP`: cannot connect"), run.error
    assert "Traceback" not in run.error and run.cid
    assert rest_backend_basic.requests("/echo/billings") == []


def test_a_failed_download_leaves_no_local_file(billings: FtpClient, tmp_path: Path) -> None:
    with pytest.raises(FtpNotFound):
        billings.download("/data/missing.csv", str(tmp_path / "missing.csv"))
    assert list(tmp_path.iterdir()) == []
