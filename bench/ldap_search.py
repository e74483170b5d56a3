"""LDAP searches per second through ``self.out.ldap`` against plain ldap3 with the same pool size.

One private OpenLDAP slapd (``tests/servers/slapd.py``, logging nothing) on 127.0.0.1 holding
the test directory. ``BENCH_LDAP_POOL`` (4) threads search for one person by ``uid`` (the seed's
filter and attributes, a different person each time) for ``BENCH_SECONDS`` (3) seconds:

* ours: an ``LdapClient`` with ``pool_size`` = the thread count, as a snapshot builds it for
  ``self.out.ldap[name]``; every search is ``with client.get() as conn: conn.search(...)``,
  so each one borrows a pooled, bound connection and gives it back;
* baseline: plain ldap3, each thread holding its own bound ``ldap3.Connection`` (SYNC
  strategy) for the whole run: the same number of connections with no pool at all.

The two alternate for ``BENCH_SLICES`` (5) slices each (which goes first alternates too), and the medians are compared:
ours / baseline, target at least 0.8. Every search must find its person.

    .venv/bin/python bench/ldap_search.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

POOL = common.env_int("BENCH_LDAP_POOL", 4)
SECONDS = common.env_float("BENCH_SECONDS", 3.0)
SLICES = common.env_int("BENCH_SLICES", 5)
TARGET = 0.8
SEED_FILTER = "(&(|(uid={user_info})(mail={user_info})))"
ATTRIBUTES = ["uid", "givenName", "sn", "mail"]


def run_threads(search: Callable[[int, str], bool], uids: list[str]) -> float:
    """Searches per second of POOL threads calling ``search(thread, uid)`` for SECONDS."""
    counts = [0] * POOL
    failures: list[str] = []
    deadline = time.perf_counter() + SECONDS

    def worker(index: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            uid = uids[(index + n) % len(uids)]
            if not search(index, uid):
                failures.append(uid)
                return
            n += 1
        counts[index] = n

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(POOL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a search did not find {failures[0]}")
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    common.setup_django()
    from connections.ldap import LdapClient, LdapSettings
    from connections.ldap_parsing import parse_servers
    from tests.servers.slapd import BIND_DN, BIND_PASSWORD, CAST, USERS_DN, SlapdServer
    from tests.servers.testca import ThrowawayCA

    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-ldap-"))
    uids = [person.uid for person in CAST]
    try:
        with SlapdServer(ThrowawayCA(work), log_level="none", name="bench-slapd") as slapd:
            client = LdapClient(LdapSettings("bench", tuple(parse_servers(slapd.url)), username=BIND_DN,
                                             password=BIND_PASSWORD, pool_size=POOL))
            plain = [slapd.connect() for _ in range(POOL)]

            def ours(index: int, uid: str) -> bool:
                with client.get() as conn:
                    return bool(conn.search(USERS_DN, SEED_FILTER.format(user_info=uid), attributes=ATTRIBUTES))

            def baseline(index: int, uid: str) -> bool:
                conn: Any = plain[index]
                return bool(conn.search(USERS_DN, SEED_FILTER.format(user_info=uid), attributes=ATTRIBUTES))

            run_threads(ours, uids)  # warm: the pool opens its connections
            ours_rates, plain_rates = [], []
            for n in range(SLICES):
                print(f"slice {n + 1}/{SLICES}", flush=True)
                # Which side goes first alternates, so a busier moment of the machine hits both alike.
                if n % 2 == 0:
                    ours_rates.append(run_threads(ours, uids))
                    plain_rates.append(run_threads(baseline, uids))
                else:
                    plain_rates.append(run_threads(baseline, uids))
                    ours_rates.append(run_threads(ours, uids))
            client.close()
            for conn in plain:
                conn.unbind()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours_rate, plain_rate = common.median(ours_rates), common.median(plain_rates)
    ratio = ours_rate / plain_rate
    print()
    print(f"{POOL} threads and connections, {SLICES} slices of {SECONDS:g} s, median searches/s")
    print(common.table(["client", "searches/s", "slices"], [
        ["self.out.ldap (pooled)", f"{ours_rate:.0f}", " ".join(f"{r:.0f}" for r in ours_rates)],
        ["plain ldap3", f"{plain_rate:.0f}", " ".join(f"{r:.0f}" for r in plain_rates)],
    ]))
    print(f"ours / plain ldap3: {ratio:.2f} (target >= {TARGET})")
    print(common.result_line("ldap_search", f"{ours_rate:.0f}/s vs plain ldap3 {plain_rate:.0f}/s, "
                             f"ratio {ratio:.2f}", ratio >= TARGET))
    return 0


if __name__ == "__main__":
    sys.exit(main())
