"""Deployment rate: services deployed per second in one process through deploy_sources.

Each round deploys BENCH_DEPLOY_MODULES (200) freshly generated modules of
BENCH_DEPLOY_SERVICES (10) services each in ONE ``integration.deploy.deploy_sources`` call:
compile, import, discovery and SimpleIO compilation, the database write in one transaction
on PostgreSQL, the configuration version bump and this process's snapshot refresh on
commit. The source differs every round, so nothing is skipped as unchanged. Baseline,
interleaved with it: bare ``compile()`` + ``exec()`` of the very same sources. A second
table redeploys the modules of the last round with changed source (the update path).
Target: at least 2,000 services/s (Zato's published figure: about 700/s on one CPU).

    .venv/bin/python bench/deploy_rate.py
"""

from __future__ import annotations

import gc
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

TARGET = 2000.0
ZATO = 700.0
MODULES = common.env_int("BENCH_DEPLOY_MODULES", 200)
SERVICES = common.env_int("BENCH_DEPLOY_SERVICES", 10)
ROUNDS = common.env_int("BENCH_DEPLOY_ROUNDS", 3)

PLAIN = '''

class Service{j}(Service):
    """Service {j} of module {m}, round {r}."""

    name = "{prefix}.s{j}"

    def handle(self):
        self.response.payload = {{"module": {m}, "service": {j}, "round": {r}, "rev": {rev}}}
'''

SIMPLEIO = '''

class Service{j}(Service):
    """Service {j} of module {m}, round {r}: SimpleIO."""

    name = "{prefix}.s{j}"

    class SimpleIO:
        input_required = (Int("item_id"), "label")
        input_optional = (Bool("urgent"),)
        output_required = ("item_id", "label")

    def handle(self):
        data = self.request.input
        self.response.payload = {{"item_id": data.item_id, "label": data.label, "rev": {rev}}}
'''


def module_source(r: int, m: int, rev: int) -> str:
    prefix = f"bench-r{r}-m{m}"
    parts = [
        f'"""Deploy-rate benchmark: round {r}, module {m}, revision {rev}."""\n\n'
        "from integration.services import Bool, Int, Service\n"
    ]
    for j in range(SERVICES):
        parts.append((SIMPLEIO if j % 2 else PLAIN).format(j=j, m=m, r=r, rev=rev, prefix=prefix))
    return "".join(parts)


def sources(r: int, rev: int) -> list[tuple[str, str]]:
    return [(f"bench_deploy_r{r}_m{m:03d}.py", module_source(r, m, rev)) for m in range(MODULES)]


def bare(files: list[tuple[str, str]]) -> float:
    """compile() + exec() of every source into a fresh module: no platform at all."""
    gc.collect()
    started = time.perf_counter()
    for filename, source in files:
        module = types.ModuleType(filename[:-3])
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - the baseline is exactly this
    return time.perf_counter() - started


def platform(files: list[tuple[str, str]], expect_new: bool) -> float:
    from integration.deploy import deploy_sources
    from integration.models import ServiceModule

    gc.collect()
    started = time.perf_counter()
    outcomes = deploy_sources(files, ServiceModule.Origin.API)
    elapsed = time.perf_counter() - started
    bad = [o for o in outcomes if not o.ok or not o.changed or len(o.services) != SERVICES]
    if bad:
        raise SystemExit(f"{len(bad)} modules not deployed as expected, e.g. {bad[0]}")
    return elapsed


def check_round(r: int) -> None:
    """The services are in the database and in this process's registry, with the new code."""
    from integration import snapshot
    from integration.models import DeployedService

    stored = DeployedService.objects.filter(name__startswith=f"bench-r{r}-").count()
    registry = snapshot.current().registry
    loaded = sum(1 for m in range(MODULES) for j in range(SERVICES) if f"bench-r{r}-m{m}.s{j}" in registry)
    if stored != MODULES * SERVICES or loaded != MODULES * SERVICES:
        raise SystemExit(
            f"round {r}: {stored} services stored, {loaded} in the registry, expected {MODULES * SERVICES}"
        )


def rate(seconds: float) -> float:
    return MODULES * SERVICES / seconds


def main() -> tuple[str, bool]:
    total = MODULES * SERVICES
    print(
        f"== deploy rate: {MODULES} modules x {SERVICES} services = {total} services per deploy_sources call, "
        f"{ROUNDS} rounds, PostgreSQL =="
    )
    common.bench_django()
    from integration import snapshot

    snapshot.current()  # the process's snapshot exists, as in a running server
    print(common.wait_for_quiet())
    rows = []
    new_rates, base_rates = [], []
    for r in range(ROUNDS):
        files = sources(r, rev=0)
        base_s = bare(files)
        ours_s = platform(files, expect_new=True)
        check_round(r)
        new_rates.append(rate(ours_s))
        base_rates.append(rate(base_s))
        rows.append(
            [
                f"new #{r + 1}",
                f"{ours_s:.3f}",
                f"{rate(ours_s):,.0f}",
                f"{base_s:.3f}",
                f"{rate(base_s):,.0f}",
                f"{rate(ours_s) / rate(base_s):.3f}",
            ]
        )
    redeploy_rates, redeploy_base = [], []
    last = ROUNDS - 1
    for rev in range(1, ROUNDS + 1):
        files = sources(last, rev=rev)
        base_s = bare(files)
        ours_s = platform(files, expect_new=False)
        redeploy_rates.append(rate(ours_s))
        redeploy_base.append(rate(base_s))
        rows.append(
            [
                f"redeploy #{rev}",
                f"{ours_s:.3f}",
                f"{rate(ours_s):,.0f}",
                f"{base_s:.3f}",
                f"{rate(base_s):,.0f}",
                f"{rate(ours_s) / rate(base_s):.3f}",
            ]
        )
    print(
        common.table(
            ["round", "deploy_sources s", "services/s", "bare compile+exec s", "bare services/s", "ours / bare"], rows
        )
    )
    ours = common.median(new_rates)
    base = common.median(base_rates)
    redeploy = common.median(redeploy_rates)
    print(
        f"median, new modules:      {ours:,.0f} services/s   ratio to target ({TARGET:,.0f}/s) = {ours / TARGET:.2f}"
        f"   ratio to Zato (~{ZATO:,.0f}/s) = {ours / ZATO:.2f}   ratio to bare compile+exec "
        f"({base:,.0f}/s) = {ours / base:.3f}"
    )
    print(
        f"median, changed modules:  {redeploy:,.0f} services/s   ratio to target = {redeploy / TARGET:.2f}"
        f"   ratio to Zato = {redeploy / ZATO:.2f}   ratio to bare = {redeploy / common.median(redeploy_base):.3f}"
    )
    reached = ours >= TARGET
    return (
        f"{ours:,.0f} services/s new, {redeploy:,.0f}/s changed (target >= {TARGET:,.0f}/s for new)",
        reached,
    )


if __name__ == "__main__":
    common.run(main)
