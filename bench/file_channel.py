"""Files per second through a file channel, from drop to service completion, against a plain read loop.

A real ``manage.py watch_files`` process (the production defaults: inotify, ``FILE_WORKERS``
threads, the model's default ``stable_seconds``) watches one directory of a file channel bound
to a user service that reads the file it is given, as the seed's ``file.notifications`` does.
``BENCH_FILE_COUNT`` (10,000) small files (``BENCH_FILE_SIZE`` bytes, 100) are written to a
staging directory on the same file system, then renamed into the watched directory in one burst,
as careful producers drop files; the clock starts before the first rename and stops at the last
service completion (the ``finished_at`` of the last ``FileClaim`` marked done). Per-file latency
is each file's completion minus its own rename.

Baseline, in the same run: a plain Python loop that lists the same directory and reads every
file (``open().read()``), the best of three passes over the same files, after the platform ran
(the page cache is as warm for it as for the watcher). Printed: files/s of both and the ratio.
The issue sets no figure: the target is correctness, every file handed over exactly once and
none failed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common

COUNT = common.env_int("BENCH_FILE_COUNT", 10_000)
SIZE = common.env_int("BENCH_FILE_SIZE", 100)
STABLE = common.env_float("BENCH_FILE_STABLE", 1.0)  # the model's default
TIMEOUT = common.env_float("BENCH_FILE_TIMEOUT", 600.0)

SERVICE_SOURCE = '''
from integration.services import Service


class BenchFileSink(Service):
    """Reads the file it is given, as the seed's file.notifications does."""

    name = "bench.file_sink"

    class SimpleIO:
        input_required = ("path",)

    def handle(self):
        with open(self.request.input.path, "rb") as handle:
            self.response.payload = {"size": len(handle.read())}
'''


def plain_loop(directory: Path) -> float:
    """Seconds for a plain loop to list ``directory`` and read every file in it."""
    started = time.perf_counter()
    read = 0
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as handle:
            read += len(handle.read())
    elapsed = time.perf_counter() - started
    assert read == COUNT * SIZE, f"the loop read {read} bytes, expected {COUNT * SIZE}"
    return elapsed


def wait_for_log(server: common.Server, offset: int, text: bytes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.log_path.open("rb") as log:
            log.seek(offset)
            if text in log.read():
                return
        if not server.alive():
            raise RuntimeError(f"{server.name} exited; see {server.log_path}")
        time.sleep(0.05)
    raise RuntimeError(f"{server.name}: no {text!r} within {timeout:.0f} s; see {server.log_path}")


def wait_done(channel_id: int, expected: int, timeout: float) -> None:
    from integration.models import FileClaim

    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        claims = FileClaim.objects.filter(channel_id=channel_id)
        done = claims.filter(status=FileClaim.Status.DONE).count()
        failed = claims.filter(status=FileClaim.Status.FAILED).first()
        if failed is not None:
            raise RuntimeError(f"{failed.path} failed: {failed.error}")
        if done >= expected:
            return
        time.sleep(0.2)
    raise RuntimeError(f"only {done:,} of {expected:,} files were processed within {timeout:.0f} s")


def main() -> tuple[str, bool]:
    common.bench_django()
    from integration.deploy import deploy_sources
    from integration.models import DeployedService, FileChannel, FileClaim

    print(common.wait_for_quiet())
    (outcome,) = deploy_sources([("bench_file_sink.py", SERVICE_SOURCE)], "api")
    if not outcome.ok:
        raise SystemExit(f"could not deploy the bench service: {outcome.error}")
    root = common.empty_dir("files")
    inbox, staging = root / "inbox", root / "staging"
    inbox.mkdir()
    staging.mkdir()
    channel = FileChannel.objects.create(
        name="bench-inbox", directory=str(inbox), patterns="*.txt", stable_seconds=STABLE,
        service=DeployedService.objects.get(name="bench.file_sink"),
    )
    body = (b"x" * (SIZE - 1)) + b"\n"
    names = [f"file-{n:06d}.txt" for n in range(COUNT)]
    for name in names:
        (staging / name).write_bytes(body)

    # common.Server wants a PORT (the settings check it too); watch_files listens on none.
    watcher = common.Server("watch_files", [common.PYTHON, "manage.py", "watch_files"],
                            common.bench_env(PORT=str(common.free_port())))
    offset = watcher.log_path.stat().st_size if watcher.log_path.exists() else 0
    try:
        watcher.start()
        wait_for_log(watcher, offset, b"Watching file channels")
        # One file first: the watch is in place and the service imported before the clock starts.
        (staging / "warm-up.txt").write_bytes(body)
        os.replace(staging / "warm-up.txt", inbox / "warm-up.txt")
        wait_done(channel.pk, 1, 60)
        os.unlink(inbox / "warm-up.txt")
        FileClaim.objects.all().delete()

        renamed: dict[str, float] = {}
        started = time.time()
        for name in names:
            os.replace(staging / name, inbox / name)
            renamed[str(inbox / name)] = time.time()
        dropped_in = time.time() - started
        wait_done(channel.pk, COUNT, TIMEOUT)
        claims = list(FileClaim.objects.filter(channel=channel).values_list("path", "finished_at", "status"))
    finally:
        watcher.stop()

    finished = {path: at.timestamp() for path, at, _ in claims}
    assert len(claims) == COUNT == len(finished), f"{len(claims)} claims for {COUNT} files"
    assert set(finished) == set(renamed), "claims for other paths than the dropped files"
    elapsed = max(finished.values()) - started
    latencies = [(finished[path] - at) * 1000 for path, at in renamed.items()]
    ours = COUNT / elapsed

    base_seconds = min(plain_loop(inbox) for _ in range(3))
    base = COUNT / base_seconds
    ratio = ours / base
    print(f"\n{COUNT:,} files of {SIZE} bytes renamed into a watched directory in {dropped_in:.2f} s; "
          f"stable_seconds {STABLE}, FILE_WORKERS default")
    print(common.table(
        ["", "files", "seconds", "files/s", "latency p50 ms", "p99 ms"],
        [["file channel + watch_files (drop to completion)", f"{COUNT:,}", f"{elapsed:.2f}", f"{ours:,.0f}",
          f"{common.percentile(latencies, 50):.0f}", f"{common.percentile(latencies, 99):.0f}"],
         ["plain loop: listdir + open().read()", f"{COUNT:,}", f"{base_seconds:.3f}", f"{base:,.0f}", "", ""]],
    ))
    print(f"ratio (file channel / plain loop): {ratio:.4f}; every file handed over once, none failed")
    text = (f"{ours:,.0f} files/s drop to completion ({COUNT:,} files, p50 {common.percentile(latencies, 50):.0f} ms, "
            f"p99 {common.percentile(latencies, 99):.0f} ms), plain read loop {base:,.0f} files/s, "
            f"ratio {ratio:.4f}; each file once")
    return text, True  # the asserts above are the target: a lost or doubled file is a crash


if __name__ == "__main__":
    common.run(main)
