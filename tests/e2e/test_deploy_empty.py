"""An empty file in the pickup directory of a running server: rejected, and the channels keep answering.

The regression: an empty ``hot_service.py`` was deployed as "0 services", which undeployed the
module, and every channel on it answered 404 in every worker. Here a real server's own pollers
pick the file up, and ``manage.py deploy`` runs as a separate process, as an operator runs it.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_hot_deployment import (
    assert_every_answer_is,
    deploy_first_version,
    last_error,
    publish,
    wait_until_every_worker_answers,
)
from tests.servers.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_empty_pickup_file_is_rejected_and_every_worker_keeps_serving(start_web, pickup_dir, make_channel,
                                                                        manage) -> None:
    server = start_web(workers=2)
    module_file = deploy_first_version(server, pickup_dir, make_channel)
    wait_until_every_worker_answers(server, 1, timeout=10)

    publish(module_file, "")
    error = wait_for(lambda: last_error("hot_service"), timeout=5, message="the empty file was not rejected")
    assert "defines no services, but module `hot_service` has 1 deployed (e2e.hot)" in error, error
    assert "DELETE /manage/api/v1/modules/hot_service/" in error, error
    time.sleep(0.6)  # the rejection bumped the configuration version: two polls for every worker to reload
    assert_every_answer_is(server, 1)
    assert "defines no services" in server.log_tail(400), "the rejection is not in the server's log"

    # The same file through `manage.py deploy`, in a process of its own: refused, saying what to do.
    emptied = pickup_dir.parent / "hot_service.py"
    emptied.write_text("# emptied by mistake\n")
    result = manage("deploy", str(emptied))
    assert result.returncode != 0
    assert "defines no services" in result.stderr and "delete it in the admin" in result.stderr, result.stderr
    assert_every_answer_is(server, 1)
