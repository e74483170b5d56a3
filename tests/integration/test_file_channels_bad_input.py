"""File channels and bad input, with real files and a real ``manage.py watch_files`` process.

Issue 15's "Bad input": unreadable files and vanishing files are logged with a CID, put where
the channel says failures go (or, when that fails too, recorded as failed in their claim row),
never retried without end, and the watcher keeps running and serving the next file.

"Unreadable" is tested with entries that cannot be read by anyone, root included (the tests
may run as root, who reads a mode 000 file regardless): a dangling symbolic link (a file whose
storage went away: a link into an unmounted share, say), a symbolic link loop, and a FIFO (an
entry that is no regular file: opening it would block the watcher for good). A mode 000 file
is added when the tests do not run as root.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from integration.models import DeployedService, FileChannel, FileClaim
from tests.integration.file_helpers import hold_source, notifications_source, read_log, watcher, watcher_log
from tests.servers.procs import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CID = r"\[([0-9a-f]{24})\]"


@pytest.fixture
def setup(transactional_db: None, builtins: None, deploy: Any, tmp_path: Path) -> dict[str, Path]:
    """The seed's service and a holding one deployed, an inbox directory and the services' logs."""
    log, hold_log = tmp_path / "service.log", tmp_path / "hold.log"
    deploy("file_notifications.py", notifications_source(log))
    deploy("file_hold.py", hold_source(hold_log, tmp_path / "release"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return {"log": log, "hold_log": hold_log, "release": tmp_path / "release", "inbox": inbox, "tmp": tmp_path}


def make_channel(directory: Path, service: str = "file.notifications", **fields: Any) -> FileChannel:
    fields.setdefault("name", "inbox")
    fields.setdefault("stable_seconds", 0.3)
    return FileChannel.objects.create(directory=str(directory), service=DeployedService.objects.get(name=service),
                                      **fields)


def served(setup: dict[str, Path], name: str) -> bool:
    return any(Path(line["path"]).name == name for line in read_log(setup["log"]))


def claim_for(name: str) -> FileClaim | None:
    return FileClaim.objects.filter(path__endswith=f"/{name}").first()


def lines_about(tmp: Path, name: str) -> list[str]:
    return [line for line in watcher_log(tmp).splitlines() if f"/{name}" in line]


def assert_still_serving(setup: dict[str, Path], proc: Any, name: str) -> None:
    """The watcher runs and hands a new file over: no crash, no crash loop."""
    assert proc.poll() is None, watcher_log(setup["tmp"])
    (setup["inbox"] / name).write_text("still here")
    wait_for(lambda: served(setup, name), 20, message=lambda: watcher_log(setup["tmp"]))
    assert proc.poll() is None
    assert watcher_log(setup["tmp"]).count("Watching file channels") == 1  # one process, never restarted


def test_unreadable_files_are_logged_with_a_cid_and_moved_to_the_error_directory(setup: dict[str, Path]) -> None:
    inbox, errors = setup["inbox"], setup["tmp"] / "errors"
    make_channel(inbox, pass_contents=True, patterns="*.txt", after_failure="move", error_directory=str(errors))
    bad = ["gone.txt", "loop.txt", "pipe.txt"]
    with watcher(setup["tmp"]) as proc:
        os.symlink(setup["tmp"] / "unmounted" / "data.txt", inbox / "gone.txt")  # leads nowhere
        os.symlink("loop.txt", inbox / "loop.txt")  # leads to itself
        os.mkfifo(inbox / "pipe.txt")  # reading it would block until someone writes
        if os.geteuid() != 0:  # root reads a mode 000 file regardless: the entries above stand for it
            (inbox / "locked.txt").write_text("secret")
            (inbox / "locked.txt").chmod(0)
            bad.append("locked.txt")
        (inbox / "good.txt").write_text("readable")
        wait_for(lambda: all(os.path.lexists(errors / name) for name in bad), 20,
                 message=lambda: watcher_log(setup["tmp"]))
        wait_for(lambda: served(setup, "good.txt"), 20)
        assert_still_serving(setup, proc, "after.txt")
    assert sorted(p.name for p in inbox.iterdir()) == ["after.txt", "good.txt"]
    assert (errors / "pipe.txt").is_fifo() and (errors / "gone.txt").is_symlink()
    for name in bad:
        claim = claim_for(name)
        assert claim is not None and claim.status == "failed" and claim.cid, name
        assert "read" in claim.error or "regular file" in claim.error, claim.error
        assert any(claim.cid in line for line in lines_about(setup["tmp"], name)), name
    assert {Path(line["path"]).name for line in read_log(setup["log"])} == {"good.txt", "after.txt"}
    assert "Traceback" not in watcher_log(setup["tmp"])


def test_an_unreadable_file_that_cannot_be_moved_is_recorded_as_failed_once(setup: dict[str, Path]) -> None:
    inbox, blocker = setup["inbox"], setup["tmp"] / "not-a-directory"
    blocker.write_text("a file where the error directory should be")
    make_channel(inbox, after_failure="move", error_directory=str(blocker / "errors"))
    with watcher(setup["tmp"]) as proc:
        os.mkfifo(inbox / "pipe.txt")
        wait_for(lambda: (claim := claim_for("pipe.txt")) and claim.status == "failed", 20,
                 message=lambda: watcher_log(setup["tmp"]))
        time.sleep(2.5)  # two rescans see it again: it is not handed over again
        assert_still_serving(setup, proc, "after.txt")
    claim = FileClaim.objects.get(path__endswith="/pipe.txt")  # exactly one
    assert "regular file" in claim.error and "cannot move it" in claim.error
    assert (inbox / "pipe.txt").is_fifo()  # left where it was: nowhere to put it
    about = lines_about(setup["tmp"], "pipe.txt")
    assert about and all(claim.cid in line for line in about)
    assert len(about) == 2  # what is wrong with it, and that it cannot be moved: once each


def test_a_file_that_vanishes_during_the_stability_wait_is_logged_and_not_retried(setup: dict[str, Path]) -> None:
    make_channel(setup["inbox"], stable_seconds=3)
    with watcher(setup["tmp"]) as proc:
        brief = setup["inbox"] / "brief.txt"
        brief.write_text("here for a moment")
        time.sleep(1)  # noticed, and waiting for it to stay unchanged
        brief.unlink()
        (line,) = wait_for(lambda: lines_about(setup["tmp"], "brief.txt"), 20,
                           message=lambda: watcher_log(setup["tmp"]))
        time.sleep(2.5)  # rescans: nothing more about it
        assert lines_about(setup["tmp"], "brief.txt") == [line]
        assert_still_serving(setup, proc, "after.txt")
    assert re.search(CID, line) and "vanished" in line
    assert claim_for("brief.txt") is None  # never handed over: the log line is its trace
    assert [Path(line["path"]).name for line in read_log(setup["log"])] == ["after.txt"]


def test_a_file_deleted_while_its_service_runs_is_recorded_with_its_cid(setup: dict[str, Path]) -> None:
    done = setup["tmp"] / "done"
    make_channel(setup["inbox"], "file.hold", after_success="move", done_directory=str(done))
    with watcher(setup["tmp"]) as proc:
        taken = setup["inbox"] / "taken.txt"
        taken.write_text("deleted under the service's feet")
        (started,) = wait_for(lambda: read_log(setup["hold_log"]), 20, message=lambda: watcher_log(setup["tmp"]))
        taken.unlink()
        setup["release"].touch()
        wait_for(lambda: (claim := claim_for("taken.txt")) and claim.status != "processing", 20)
        time.sleep(2.5)  # rescans: nothing more about it
        assert proc.poll() is None
        (setup["inbox"] / "after.txt").write_text("still here")
        wait_for(lambda: (done / "after.txt").exists(), 20, message=lambda: watcher_log(setup["tmp"]))
    claim = FileClaim.objects.get(path__endswith="/taken.txt")  # exactly one
    assert claim.status == "failed" and claim.cid == started["cid"]
    assert "Cannot move the file" in claim.error and "No such file" in claim.error
    about = lines_about(setup["tmp"], "taken.txt")
    assert len(about) == 1 and claim.cid in about[0]
    assert [Path(line["path"]).name for line in read_log(setup["hold_log"])] == ["taken.txt", "after.txt"]
    assert not os.path.lexists(done / "taken.txt")
    assert "Traceback" not in watcher_log(setup["tmp"])


def test_one_watcher_survives_all_of_it_and_serves_the_next_file(setup: dict[str, Path]) -> None:
    """Bad entries one after another in one process, dropped both while it runs and before it starts."""
    inbox, errors = setup["inbox"], setup["tmp"] / "errors"
    make_channel(inbox, pass_contents=True, after_failure="move", error_directory=str(errors), stable_seconds=0.5)
    os.mkfifo(inbox / "early-pipe.txt")  # there before the watcher starts: found by the first scan
    os.symlink(setup["tmp"] / "nowhere", inbox / "early-gone.txt")
    with watcher(setup["tmp"]) as proc:
        for n in range(3):
            os.mkfifo(inbox / f"pipe-{n}.txt")
            os.symlink(setup["tmp"] / f"nowhere-{n}", inbox / f"gone-{n}.txt")
            (inbox / f"brief-{n}.txt").write_text("gone soon")
            time.sleep(0.2)
            (inbox / f"brief-{n}.txt").unlink()
            (inbox / f"good-{n}.txt").write_text(f"good {n}")
        names = ["early-pipe.txt", "early-gone.txt", *(f"{k}-{n}.txt" for n in range(3) for k in ("pipe", "gone"))]
        wait_for(lambda: all(os.path.lexists(errors / name) for name in names), 20,
                 message=lambda: watcher_log(setup["tmp"]))
        wait_for(lambda: all(served(setup, f"good-{n}.txt") for n in range(3)), 20)
        assert_still_serving(setup, proc, "after.txt")
    assert FileClaim.objects.filter(status="failed").count() == len(names)
    assert FileClaim.objects.filter(status="done").count() == 4
    assert "Traceback" not in watcher_log(setup["tmp"])


def test_a_link_to_a_file_is_handed_over_once_as_that_file(setup: dict[str, Path]) -> None:
    """Not bad input, but it was: the link's own stat against its target's looked like a change, for ever."""
    make_channel(setup["inbox"], pass_contents=True)
    target = setup["tmp"] / "elsewhere.txt"
    target.write_text("reached through a link")
    with watcher(setup["tmp"]) as proc:
        os.symlink(target, setup["inbox"] / "linked.txt")
        wait_for(lambda: served(setup, "linked.txt"), 20, message=lambda: watcher_log(setup["tmp"]))
        time.sleep(2.5)  # rescans: not handed over again
        assert proc.poll() is None
    (line,) = read_log(setup["log"])
    assert line["data"] == "reached through a link"
    assert FileClaim.objects.get(path__endswith="/linked.txt").status == "done"
