"""Cold start: seconds from starting the web server to the first HTTP 200 from a REST channel.

The platform server (granian as ``manage.py serve`` starts it + config.wsgi:application, WEB_WORKERS=2)
starts with BENCH_COLD_MODULES (100) user service modules deployed, and is polled every
5 ms on a REST channel bound to one of those user services. Baseline, in the same run and
interleaved with it: the same granian command line serving bench/trivial_wsgi.py. Each is
started BENCH_COLD_REPEATS (5) times; medians are compared. Target: under 1.5 s (Zato's
published figure: under 2 s).

    .venv/bin/python bench/cold_start.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

TARGET_S = 1.5
ZATO_S = 2.0
MODULES = common.env_int("BENCH_COLD_MODULES", 100)
REPEATS = common.env_int("BENCH_COLD_REPEATS", 5)
CHANNEL_PATH = "/cold/hello"

MODULE_TEMPLATE = '''"""Cold-start benchmark module {n}."""

from integration.services import Int, Service


class Hello(Service):
    """A plain service."""

    name = "cold.hello-{n:03d}"

    def handle(self):
        self.response.payload = {{"hello": "world", "module": {n}}}


class GetItem(Service):
    """A SimpleIO service."""

    name = "cold.get-item-{n:03d}"

    class SimpleIO:
        input_required = (Int("item_id"),)
        output_required = ("item_id", "name")

    def handle(self):
        item_id = self.request.input.item_id
        self.response.payload = {{"item_id": item_id, "name": f"item {{item_id}}"}}
'''


def prepare() -> str:
    """Fresh bench database with MODULES user modules and one REST channel; returns its service name."""
    common.bench_django()
    from django.db import connections

    from integration.deploy import deploy_sources
    from integration.models import DeployedService, RestChannel, ServiceModule

    files = [(f"bench_cold_{n:03d}.py", MODULE_TEMPLATE.format(n=n)) for n in range(MODULES)]
    outcomes = deploy_sources(files, ServiceModule.Origin.CLI)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"deployment failed: {failed[0].filename}: {failed[0].error}")
    service = f"cold.hello-{MODULES - 1:03d}"
    RestChannel.objects.create(
        name="bench.cold", method="GET", url_path=CHANNEL_PATH, service=DeployedService.objects.get(name=service)
    )
    user_modules = ServiceModule.objects.exclude(origin=ServiceModule.Origin.BUILTIN).count()
    connections.close_all()
    print(
        f"deployed {user_modules} user service modules ({2 * MODULES} services); channel GET {CHANNEL_PATH} "
        f"-> {service}"
    )
    return service


def one_start(kind: str, pickup: Path) -> tuple[float, float]:
    port = common.free_port()
    env = common.bench_env(PORT=str(port), WEB_WORKERS="2", PICKUP_DIR=str(pickup))
    if kind == "platform":
        server = common.web("cold-platform", "config.wsgi:application", env)
        path = CHANNEL_PATH
    else:
        server = common.web("cold-baseline", "bench.trivial_wsgi:application", env)
        path = "/"
    try:
        server.start()
        return common.wait_for_200(server, path, timeout=60)
    finally:
        server.stop()


def main() -> tuple[str, bool]:
    print(
        f"== cold start: granian start -> first HTTP 200 (2 workers, {MODULES} user modules, {REPEATS} starts each) =="
    )
    prepare()
    pickup = common.empty_dir("cold-pickup")
    print(common.wait_for_quiet())
    samples: dict[str, list[tuple[float, float]]] = {"platform": [], "baseline": []}
    one_start("platform", pickup)  # warm the OS file cache once, not counted
    one_start("baseline", pickup)
    for i in range(REPEATS):
        order = ("platform", "baseline") if i % 2 == 0 else ("baseline", "platform")
        for kind in order:
            samples[kind].append(one_start(kind, pickup))
    rows = []
    for kind, label in (
        ("baseline", "baseline: granian + trivial WSGI app"),
        ("platform", "Switchboard: REST channel, user service"),
    ):
        accept = [a for a, _ in samples[kind]]
        first = [b for _, b in samples[kind]]
        rows.append(
            [
                label,
                f"{common.median(accept):.3f}",
                f"{common.median(first):.3f}",
                f"{min(first):.3f}",
                f"{max(first):.3f}",
            ]
        )
    print(common.table(["server", "median s to accept", "median s to 200", "min", "max"], rows))
    ours = common.median([b for _, b in samples["platform"]])
    base = common.median([b for _, b in samples["baseline"]])
    print(
        f"all starts (s to 200): platform {[round(b, 3) for _, b in samples['platform']]}, "
        f"baseline {[round(b, 3) for _, b in samples['baseline']]}"
    )
    print(
        f"ratio ours / target ({TARGET_S} s) = {ours / TARGET_S:.2f}   "
        f"ours / Zato's published figure ({ZATO_S} s) = {ours / ZATO_S:.2f}   "
        f"ours / baseline = {ours / base:.2f} (platform adds {ours - base:.3f} s)"
    )
    reached = ours < TARGET_S
    return (
        f"{ours:.3f} s median to first 200 (target < {TARGET_S} s, baseline {base:.3f} s)",
        reached,
    )


if __name__ == "__main__":
    common.run(main)
