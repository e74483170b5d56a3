"""File channels with real files and real ``manage.py watch_files`` processes on the test's database.

The seed's scenario (a file dropped into a watched directory reaches ``file.notifications``
with its path, and the service reads it), after-success and after-failure moves, files dropped
while no watcher ran, two watchers sharing a directory, and a large file written slowly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from integration.models import DeployedService, FileChannel, FileClaim
from tests.integration.file_helpers import notifications_source, read_log, watcher
from tests.servers.procs import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def setup(transactional_db: None, builtins: None, deploy: Any, tmp_path: Path) -> dict[str, Path]:
    """The seed's service deployed, an inbox directory and the service's own log."""
    log = tmp_path / "service.log"
    deploy("file_notifications.py", notifications_source(log))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return {"log": log, "inbox": inbox, "tmp": tmp_path}


def make_channel(directory: Path, **fields: Any) -> FileChannel:
    fields.setdefault("name", "inbox")
    fields.setdefault("stable_seconds", 0.3)
    return FileChannel.objects.create(directory=str(directory),
                                      service=DeployedService.objects.get(name="file.notifications"), **fields)


def drop(directory: Path, name: str, data: bytes) -> Path:
    """Write a file elsewhere and move it in, as careful producers do."""
    staging = directory.parent / "staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_bytes(data)
    time.sleep(0.02)  # a later clock tick than the last write: the rename shows in the inode's ctime
    os.replace(staging / name, directory / name)
    return directory / name


def test_a_dropped_file_reaches_the_seeds_service_with_its_path(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], pass_contents=True, patterns="*.txt")
    with watcher(setup["tmp"]):
        (setup["inbox"] / "hello.txt").write_text("Hello from a file")
        (setup["inbox"] / "ignored.tmp~").write_text("not matched")
        (line,) = wait_for(lambda: read_log(setup["log"]), 20, message="the service never ran")
    assert line["path"] == str(setup["inbox"] / "hello.txt")
    assert line["size"] == len("Hello from a file")  # the service read it itself
    assert line["data"] == "Hello from a file" and line["event"] == "created"
    assert line["channel"] == "inbox" and line["type"] == "file"
    assert (setup["inbox"] / "hello.txt").exists()  # after success: left (the default)
    claim = FileClaim.objects.get(path=str(setup["inbox"] / "hello.txt"))
    assert claim.status == "done" and claim.cid == line["cid"]


def test_only_matching_patterns_count_and_the_rest_stay_untouched(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], patterns="*.csv, *.json", after_success="delete")
    with watcher(setup["tmp"]):
        drop(setup["inbox"], "a.csv", b"1,2")
        drop(setup["inbox"], "b.txt", b"text")
        drop(setup["inbox"], "c.json", b"{}")
        wait_for(lambda: len(read_log(setup["log"])) == 2, 20)
        wait_for(lambda: not (setup["inbox"] / "c.json").exists(), 10)
    assert sorted(Path(line["path"]).name for line in read_log(setup["log"])) == ["a.csv", "c.json"]
    assert {line["event"] for line in read_log(setup["log"])} == {"moved"}  # moved in, not written in place
    assert sorted(p.name for p in setup["inbox"].iterdir()) == ["b.txt"]


def test_files_are_moved_after_success_and_after_failure(setup: dict[str, Path]) -> None:
    done, errors = setup["tmp"] / "done", setup["tmp"] / "errors"
    make_channel(setup["inbox"], after_success="move", done_directory=str(done), after_failure="move",
                 error_directory=str(errors), recursive=True)
    (setup["inbox"] / "sub").mkdir()
    with watcher(setup["tmp"]):
        drop(setup["inbox"], "good.txt", b"fine")
        (setup["inbox"] / "sub" / "bad.txt").write_bytes(b"fail, please")
        wait_for(lambda: (done / "good.txt").exists() and (errors / "sub" / "bad.txt").exists(), 20)
    assert not list(setup["inbox"].rglob("*.txt"))
    failed = FileClaim.objects.get(status="failed")
    assert failed.path.endswith("sub/bad.txt") and "this file asks to fail" not in failed.error
    assert "file.notifications -> 500" in failed.error and failed.cid  # the CID leads to the traceback in the log
    assert len(read_log(setup["log"])) == 1


def test_files_dropped_while_no_watcher_ran_are_processed_at_start(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], after_success="delete")
    for n in range(5):
        drop(setup["inbox"], f"early-{n}.txt", b"x" * n)
    with watcher(setup["tmp"]):
        wait_for(lambda: len(read_log(setup["log"])) == 5, 20)
        wait_for(lambda: not list(setup["inbox"].iterdir()), 10)
    assert FileClaim.objects.filter(status="done").count() == 5


def test_two_watchers_process_each_file_once(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], stable_seconds=0.2)  # left in place: both keep seeing every file
    count = 60
    with watcher(setup["tmp"], "one"), watcher(setup["tmp"], "two"):
        for n in range(count):
            drop(setup["inbox"], f"f{n:03}.txt", f"file {n}".encode())
        wait_for(lambda: len(read_log(setup["log"])) >= count, 60)
        time.sleep(2.5)  # two more rescans by each: nothing is handed over again
    lines = read_log(setup["log"])
    assert sorted(line["path"] for line in lines) == sorted(str(setup["inbox"] / f"f{n:03}.txt") for n in range(count))
    assert FileClaim.objects.count() == count


def test_a_large_file_written_slowly_is_handed_over_once_and_complete(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], stable_seconds=1.0)
    chunk, chunks = b"z" * 256 * 1024, 16  # 4 MiB over about 3 s, in place
    with watcher(setup["tmp"]):
        with open(setup["inbox"] / "big.bin", "wb") as handle:
            for _ in range(chunks):
                handle.write(chunk)
                handle.flush()
                time.sleep(0.2)
        (line,) = wait_for(lambda: read_log(setup["log"]), 20)
        time.sleep(2)
    assert line["size"] == len(chunk) * chunks
    assert len(read_log(setup["log"])) == 1


def test_a_modified_file_counts_only_when_the_channel_says_so(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], on_modified=True)
    with watcher(setup["tmp"]):
        target = setup["inbox"] / "doc.txt"
        target.write_text("v1")
        wait_for(lambda: len(read_log(setup["log"])) == 1, 20)
        time.sleep(0.05)
        target.write_text("version 2")
        wait_for(lambda: len(read_log(setup["log"])) == 2, 20)
    assert [line["event"] for line in read_log(setup["log"])] == ["created", "modified"]


def test_a_name_that_is_not_utf8_is_moved_to_the_error_directory_with_a_cid(setup: dict[str, Path]) -> None:
    errors = setup["tmp"] / "errors"
    make_channel(setup["inbox"], after_failure="move", error_directory=str(errors))
    with watcher(setup["tmp"]) as proc:
        raw = os.fsencode(str(setup["inbox"])) + b"/caf\xe9.txt"
        with open(raw, "wb") as handle:
            handle.write(b"latin-1 name")
        drop(setup["inbox"], "fine.txt", b"ok")
        wait_for(lambda: os.path.exists(os.fsencode(str(errors)) + b"/caf\xe9.txt"), 20)
        wait_for(lambda: len(read_log(setup["log"])) == 1, 20)
        assert proc.poll() is None  # still watching
    claim = FileClaim.objects.get(status="failed")
    assert claim.path.endswith("caf\\xe9.txt") and "not valid UTF-8" in claim.error and claim.cid
    log = (setup["tmp"] / "watcher.log").read_text(errors="replace")
    assert claim.cid in log


def test_a_directory_that_does_not_exist_is_watched_once_it_appears(setup: dict[str, Path]) -> None:
    later = setup["tmp"] / "later"
    make_channel(later)
    with watcher(setup["tmp"]) as proc:
        time.sleep(1.5)
        assert proc.poll() is None
        later.mkdir()
        (later / "x.txt").write_text("arrived")
        wait_for(lambda: read_log(setup["log"]), 20)
    assert "does not exist" in (setup["tmp"] / "watcher.log").read_text()


def test_a_channel_added_while_running_is_watched_without_a_restart(setup: dict[str, Path]) -> None:
    with watcher(setup["tmp"]):
        drop(setup["inbox"], "before.txt", b"waiting")
        time.sleep(1)
        make_channel(setup["inbox"], use_polling=True)
        wait_for(lambda: read_log(setup["log"]), 20)
        drop(setup["inbox"], "after.txt", b"polled")
        wait_for(lambda: len(read_log(setup["log"])) == 2, 20)
