"""Admin list pages: time and queries with 10,000 REST channels against 100, side by side.

Two bench databases on the same PostgreSQL server, migrated alike: ``BENCH_DB_NAME``
(``switchboard_bench``) holds ``BENCH_ADMIN_BIG`` (10,000) REST channels and
``<BENCH_DB_NAME>_small`` holds ``BENCH_ADMIN_SMALL`` (100), bulk-created and ANALYZEd,
every third behind a Basic Auth definition. One process renders the admin changelist of
REST channels with Django's test client (in-process: the whole middleware stack,
session, TOTP-verified user, admin view and template, no HTTP server) against one
database, then the other, round after round (the connection is switched between
databases outside the timed part, and one untimed request follows each switch).

Pages, each at the default 50 rows a page: the first page, a middle page (``?p=`` half
the pages: 100 of 200, or 1 of 2), and a search (``?q=channel-0004``, 10 matches in either
database, which PostgreSQL must find by scanning the names, paths, services and
definitions of every channel). Printed per page: median ms per request with each
database, the ratio big/small (target: under 2) and the queries per request with each
(they must be equal). ``BENCH_ADMIN_ROUNDS`` (5) rounds of ``BENCH_ADMIN_REQUESTS`` (20)
requests per page and database.

    .venv/bin/python bench/admin_list.py
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

BIG = common.env_int("BENCH_ADMIN_BIG", 10_000)
SMALL = common.env_int("BENCH_ADMIN_SMALL", 100)
ROUNDS = common.env_int("BENCH_ADMIN_ROUNDS", 5)
REQUESTS = common.env_int("BENCH_ADMIN_REQUESTS", 20)
TARGET_RATIO = 2.0
PAGE_SIZE = 50
URL = "/admin/integration/restchannel/"
SMALL_DB = f"{common.BENCH_DB_NAME}_small"
USERNAME = "bench-admin"


def pages(rows: int) -> dict[str, dict[str, str]]:
    middle = max(1, (rows + PAGE_SIZE - 1) // PAGE_SIZE // 2)
    return {"first page": {}, "middle page": {"p": str(middle)}, "search": {"q": "channel-0004"}}


def create_small_database() -> None:
    """The second database: dropped, created and migrated like the main bench database."""
    import psycopg

    big_url = common.bench_database_url()
    small_url = common.with_db(big_url, SMALL_DB)
    with psycopg.connect(common.with_db(big_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SMALL_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SMALL_DB}"')
    common.LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = common.LOG_DIR / "migrate-small.log"
    with log.open("wb") as out:
        result = subprocess.run(
            [common.PYTHON, "manage.py", "migrate", "--noinput"],
            cwd=common.REPO,
            env=common.bench_env(PICKUP_WATCH="false", DATABASE_URL=small_url),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if result.returncode:
        raise SystemExit(f"manage.py migrate failed on {SMALL_DB}; see {log}")


def use_database(name: str) -> None:
    """Point this process's default connection at one of the two bench databases."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def fill(rows: int) -> Any:
    """``rows`` channels, a Basic Auth definition on every third, an admin with a TOTP device; returns a client."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts import enrolment
    from accounts.models import BasicAuth
    from integration.models import DeployedService, RestChannel

    service = DeployedService.objects.get(name="demo.get-customer")
    crm = BasicAuth(name="crm-callers", username="crm")
    crm.set_password("not-used")
    crm.save()
    methods = ["GET", "POST", "PUT", "DELETE", ""]
    RestChannel.objects.bulk_create(
        (
            RestChannel(name=f"channel-{i:05d}", url_path=f"/api/things/{i:05d}", method=methods[i % 5],
                        service=service, security=crm if i % 3 == 0 else None)
            for i in range(rows)
        ),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    user = get_user_model().objects.create_superuser(USERNAME, "bench@example.com", "bench-password-1")
    device, _key = enrolment.reset_key(user)
    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host; no test environment set up here
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def measure(client: Any, params: dict[str, str], expected_rows: int) -> tuple[list[float], int]:
    """Times of REQUESTS requests in ms, and the number of queries of one of them."""
    from django.db import connection

    executed = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(URL, params)
    if response.status_code != 200:
        raise SystemExit(f"GET {URL} {params} answered {response.status_code}")
    shown = response.content.count(b'class="action-select"')  # one checkbox per listed row
    if shown != expected_rows:
        raise SystemExit(f"GET {URL} {params} showed {shown} rows, expected {expected_rows}")
    times = []
    gc.collect()
    for _ in range(REQUESTS):
        started = time.perf_counter()
        client.get(URL, params)
        times.append((time.perf_counter() - started) * 1000)
    return times, len(executed)


def expected_rows(rows: int, page: str) -> int:
    if page == "search":
        return 10
    return min(PAGE_SIZE, rows)


def main() -> tuple[str, bool]:
    print(
        f"== admin list page: {BIG:,} REST channels against {SMALL:,}, Django test client in-process, "
        f"{ROUNDS} rounds x {REQUESTS} requests per page and database =="
    )
    common.recreate_database()
    create_small_database()
    common.setup_django(PICKUP_WATCH="false", ADMIN_REQUIRE_TOTP="true")
    from django.conf import settings

    databases = {"big": common.BENCH_DB_NAME, "small": SMALL_DB}
    sizes = {"big": BIG, "small": SMALL}
    clients = {}
    for which in ("small", "big"):
        use_database(databases[which])
        clients[which] = fill(sizes[which])
    print(f"count limit (ADMIN_EXACT_COUNT_LIMIT): {settings.ADMIN_EXACT_COUNT_LIMIT:,} rows")
    print(common.wait_for_quiet())

    times: dict[tuple[str, str], list[float]] = {}
    queries: dict[tuple[str, str], set[int]] = {}
    for _round in range(ROUNDS):
        for which in ("small", "big"):
            use_database(databases[which])
            clients[which].get(URL)  # reconnect outside the timing
            for page, params in pages(sizes[which]).items():
                took, count = measure(clients[which], params, expected_rows(sizes[which], page))
                times.setdefault((page, which), []).extend(took)
                queries.setdefault((page, which), set()).add(count)
    use_database(databases["big"])

    rows, ratios, equal = [], [], True
    for page in pages(BIG):
        small_ms = common.median(times[(page, "small")])
        big_ms = common.median(times[(page, "big")])
        ratio = big_ms / small_ms
        ratios.append(ratio)
        q_small, q_big = sorted(queries[(page, "small")]), sorted(queries[(page, "big")])
        same = q_small == q_big and len(q_small) == 1
        equal = equal and same
        rows.append([
            page, f"{small_ms:.1f}", f"{big_ms:.1f}", f"{ratio:.2f}",
            ",".join(map(str, q_small)), ",".join(map(str, q_big)), "yes" if same else "NO",
        ])
    print(common.table(
        ["page", f"ms, {SMALL:,} rows", f"ms, {BIG:,} rows", "ratio", "queries small", "queries big", "equal"], rows
    ))
    worst = max(ratios)
    reached = worst < TARGET_RATIO and equal
    print(
        f"worst ratio {worst:.2f} (target < {TARGET_RATIO:g}); queries per page "
        f"{'equal' if equal else 'NOT equal'} with {SMALL:,} and {BIG:,} rows"
    )
    return (
        f"list page {BIG:,} vs {SMALL:,} channels: worst ratio {worst:.2f}, queries "
        f"{'constant' if equal else 'NOT constant'} (target < {TARGET_RATIO:g}, constant)",
        reached,
    )


if __name__ == "__main__":
    common.run(main)
