"""Security throughput: requests/s and p50/p99 of a REST channel per security type vs no security.

One granian (``manage.py serve``'s command line, 2 workers) serves bench.wsgi, as in
rest_throughput.py. Six REST channels, each a GET bound to the same hello-world user
service (``bench.hello``), differ only in their security definition:

* open:     no security (the baseline of every ratio);
* basic:    HTTP Basic Auth (``Authorization: Basic ...``);
* tech_acc: a technical account (``X-Zato-User`` / ``X-Zato-Password``);
* apikey:   an API key (``X-API-Key``);
* jwt:      a JWT definition; the token comes from ``POST /zato/jwt/log-in`` on the running
            server and is sent as ``Authorization: Bearer``; its session lives in Redis and
            is rechecked and extended there at most every JWT_SESSION_RECHECK (1 s) per process;
* vault:    a Vault connection, username/password method (``X-Zato-Vault-Username`` /
            ``-Password``) against the loopback fake Vault of tests/servers/vault.py, run in
            this process, with the definition's result cache on (``cache_ttl``, default the
            model's 5 s; ``BENCH_VAULT_CACHE_TTL`` overrides).

Every check runs as in production: Basic Auth, technical account and JWT passwords are stored
with Django's PBKDF2 (~0.4 s a check), which each worker pays once per credential and then
remembers (accounts/authentication.py); the brute-force limits (accounts/limits.py) are on,
so a success also pays their local check and one read of the shared count (Redis) per caller
per CREDENTIAL_RECHECK second. At the end, the limits are shown to hold: after
CREDENTIAL_MAX_FAILURES wrong passwords on the Basic channel the right one gets 429, and a
blocked caller hammering it is refused without any password hash (its rate is printed).

Measured, interleaved at 16 and 64 connections (``BENCH_CONNECTIONS``; wrk threads =
min(connections, 2)) for ``BENCH_SECONDS`` (10) per target, cut into ``BENCH_SLICES`` (5)
slices taken round-robin across the six targets. Target (issue 3): every type keeps at
least 0.85 of the unsecured channel's requests/s at the same concurrency. Also printed: the
web server workers' CPU time per request of each target (what each type costs the server, less
sensitive than req/s to other load on this 2-core machine).

    BENCH_SECONDS=10 .venv/bin/python bench/security_throughput.py
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.rest_throughput import HELLO, combine, ensure_wrk, wrk

SECONDS = common.env_int("BENCH_SECONDS", 10)
WARMUP = common.env_int("BENCH_WARMUP_SECONDS", 2)
SLICES = max(1, common.env_int("BENCH_SLICES", 5))
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "16,64").split(",")]
VAULT_CACHE_TTL = os.environ.get("BENCH_VAULT_CACHE_TTL")  # None: the model's default
TARGET_RATIO = 0.85

BASIC_USER, BASIC_PASSWORD = "bench-basic-caller", "bench-basic-password"
TECH_ACC, TECH_PASSWORD = "bench-tech-account", "bench-tech-password"
JWT_USER, JWT_PASSWORD = "bench-jwt-user", "bench-jwt-password"
VAULT_USER, VAULT_PASSWORD = "bench-vault-user", "bench-vault-password"
WRONG = "not-the-password"
MAX_FAILURES = 10  # CREDENTIAL_MAX_FAILURES given to the server

# key, label, path; the headers come from credentials(), the JWT one only once the server runs.
CHANNELS = [
    ("open", "no security (baseline)", "/st/open"),
    ("basic", "HTTP Basic Auth", "/st/basic"),
    ("tech_acc", "technical account", "/st/tech-acc"),
    ("apikey", "API key", "/st/apikey"),
    ("jwt", "JWT (session in Redis)", "/st/jwt"),
    ("vault", "Vault userpass, cached", "/st/vault"),
]
KEYS = [key for key, _, _ in CHANNELS]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def prepare(vault_url: str) -> dict[str, str]:
    """Deploy the service, create one definition per type and one channel each; returns secrets made here."""
    common.bench_django()
    from django.db import connections

    from accounts.models import ApiKey, BasicAuth, JWTDefinition, TechAccount
    from connections.models import VaultConnection
    from integration.deploy import deploy_sources
    from integration.models import DeployedService, RestChannel, ServiceModule

    (outcome,) = deploy_sources([("bench_hello.py", HELLO)], ServiceModule.Origin.CLI)
    if not outcome.ok:
        raise SystemExit(outcome.error)
    service = DeployedService.objects.get(name="bench.hello")

    basic = BasicAuth(name="bench-basic", username=BASIC_USER)
    basic.set_password(BASIC_PASSWORD)
    basic.save()
    tech = TechAccount(name=TECH_ACC)
    tech.set_password(TECH_PASSWORD)
    tech.save()
    apikey = ApiKey(name="bench-apikey")
    key = apikey.new_key()
    apikey.save()
    jwt = JWTDefinition(name="bench-jwt", username=JWT_USER, ttl=3600)
    jwt.set_password(JWT_PASSWORD)
    jwt.save()
    vault = VaultConnection(
        name="bench-vault", url=vault_url, default_auth_method=VaultConnection.AuthMethod.USERNAME_PASSWORD
    )
    if VAULT_CACHE_TTL is not None:
        vault.cache_ttl = float(VAULT_CACHE_TTL)
    vault.save()
    definitions = {"open": None, "basic": basic, "tech_acc": tech, "apikey": apikey, "jwt": jwt, "vault": vault}
    for key_, _, path in CHANNELS:
        RestChannel.objects.create(
            name=f"bench.sec.{key_}", method="GET", url_path=path, service=service, security=definitions[key_]
        )
    connections.close_all()
    return {"apikey": key, "vault_cache_ttl": f"{vault.cache_ttl:g}"}


def jwt_log_in(port: int) -> str:
    body = json.dumps({"username": JWT_USER, "password": JWT_PASSWORD}).encode()
    status, data, _ = common.request(
        port, "POST", "/zato/jwt/log-in", headers={"Content-Type": "application/json"}, body=body
    )
    if status != 200:
        raise SystemExit(f"POST /zato/jwt/log-in answered {status} {data[:200]!r}")
    return json.loads(data)["token"]


def jwt_log_out(port: int, token: str) -> None:
    """End the benchmark's JWT session, so it does not linger in Redis for the TTL."""
    try:
        common.request(port, "POST", "/zato/jwt/log-out", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    except OSError:
        pass


def credentials(secrets: dict[str, str], token: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(right, wrong) headers per target; open has none of either."""
    tampered = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    right = {
        "open": {},
        "basic": {"Authorization": _basic(BASIC_USER, BASIC_PASSWORD)},
        "tech_acc": {"X-Zato-User": TECH_ACC, "X-Zato-Password": TECH_PASSWORD},
        "apikey": {"X-API-Key": secrets["apikey"]},
        "jwt": {"Authorization": f"Bearer {token}"},
        "vault": {"X-Zato-Vault-Username": VAULT_USER, "X-Zato-Vault-Password": VAULT_PASSWORD},
    }
    wrong = {
        "basic": {"Authorization": _basic(BASIC_USER, WRONG)},
        "tech_acc": {"X-Zato-User": TECH_ACC, "X-Zato-Password": WRONG},
        "apikey": {"X-API-Key": secrets["apikey"][:-4] + "xxxx"},
        "jwt": {"Authorization": f"Bearer {tampered}"},
        "vault": {"X-Zato-Vault-Username": VAULT_USER, "X-Zato-Vault-Password": WRONG},
    }
    return right, wrong


def check(port: int, right: dict[str, dict[str, str]], wrong: dict[str, dict[str, str]]) -> None:
    """Every channel answers 200 and the hello body with its credentials; each secured one 401 without
    credentials and with wrong ones (the Vault one also hands back a Vault token on success)."""
    for key, _, path in CHANNELS:
        status, body, headers = common.request(port, "GET", path, headers=right[key])
        if status != 200 or json.loads(body) != {"hello": "world"}:
            raise SystemExit(f"{key}: GET {path} with credentials answered {status} {body[:200]!r}")
        if key == "vault" and "x-zato-vault-token" not in headers:
            raise SystemExit(f"{key}: GET {path} answered 200 without X-Zato-Vault-Token: not Vault's yes")
        if key == "open":
            continue
        for what, sent in (("without credentials", {}), ("with wrong credentials", wrong[key])):
            status, body, _ = common.request(port, "GET", path, headers=sent)
            if status != 401:
                raise SystemExit(f"{key}: GET {path} {what} answered {status} {body[:200]!r}, expected 401")


def throttle_check(port: int, right: dict[str, dict[str, str]], wrong: dict[str, dict[str, str]]) -> str:
    """Block the Basic channel for this address with wrong passwords; the right one must then get 429.

    Returns the Retry-After the refusal carried. Run after the measurements: the block lasts the
    window (CREDENTIAL_FAILURE_WINDOW) for every request from 127.0.0.1 to that definition.
    """
    # check() already sent one wrong password, which may or may not still be in the window.
    refused = 0
    for _ in range(MAX_FAILURES):
        status, body, _ = common.request(port, "GET", "/st/basic", headers=wrong["basic"])
        if status not in (401, 429):
            raise SystemExit(f"basic: a wrong password answered {status} {body[:200]!r}, expected 401 or 429")
        refused += status == 429
    if refused > 1:
        raise SystemExit(f"basic: {refused} wrong passwords refused with 429 before {MAX_FAILURES} had failed")
    status, body, headers = common.request(port, "GET", "/st/basic", headers=right["basic"])
    if status != 429 or "retry-after" not in headers or json.loads(body).get("cid") != headers.get("x-zato-cid"):
        raise SystemExit(f"basic: after {MAX_FAILURES} wrong passwords the right one answered {status} "
                         f"{body[:200]!r}, expected 429 with Retry-After and the CID")
    return headers["retry-after"]


def _redis_cpu() -> float:
    """CPU seconds used so far by redis-server processes on this machine (they serve the JWT sessions)."""
    return common.processes_cpu(lambda command, _pgrp: command.startswith("redis-server"))


def main() -> tuple[str, bool]:
    from tests.servers.vault import FakeVault

    binary = ensure_wrk()
    print(
        f"== Security throughput: wrk {SECONDS} s per target at {CONNECTIONS} connections (in {SLICES} "
        f"interleaved slices); one REST channel per security type, same hello-world service; "
        f"granian 2 workers =="
    )
    fake = FakeVault().start()
    server = None
    results: dict[tuple[str, int], dict] = {}
    token = ""
    try:
        fake.add_user(VAULT_USER, VAULT_PASSWORD)
        secrets = prepare(fake.url)
        port = common.free_port()
        env = common.bench_env(
            PORT=str(port),
            WEB_WORKERS="2",
            PICKUP_DIR=str(common.empty_dir("st-pickup")),
            DJANGO_SETTINGS_MODULE="bench.settings",
            CREDENTIAL_MAX_FAILURES=str(MAX_FAILURES),
        )
        server = common.web("security-throughput", "bench.wsgi:application", env)
        print(common.wait_for_quiet())
        try:
            server.start()
            common.wait_for_200(server, "/st/open", timeout=60)
            token = jwt_log_in(port)
            right, wrong = credentials(secrets, token)
            check(port, right, wrong)
            for key, _, path in CHANNELS:
                wrk(binary, port, path, right[key], 16, WARMUP)
            # Slices round-robin across the targets, so background load hits baseline and secured alike.
            slice_s = max(1, round(SECONDS / SLICES))
            slices: dict[tuple[str, int], list[dict]] = {}
            fake.reset_calls()
            redis0 = _redis_cpu()
            account = common.CPUAccount(server.proc.pid)
            account.start()
            for connections in CONNECTIONS:
                for _ in range(SLICES):
                    for key, _, path in CHANNELS:
                        cpu0 = common.group_cpu(server.proc.pid)
                        one = wrk(binary, port, path, right[key], connections, slice_s)
                        one["server_cpu"] = common.group_cpu(server.proc.pid) - cpu0
                        slices.setdefault((key, connections), []).append(one)
                        if not server.alive():
                            raise SystemExit(f"the server died; see {server.log_path}")
            results = {k: combine(v) for k, v in slices.items()}
            for k, v in slices.items():
                # The workers' CPU per request: what each type costs the server, less sensitive to
                # other load on the machine than req/s.
                results[k]["cpu_us"] = sum(s["server_cpu"] for s in v) / sum(s["requests"] for s in v) * 1e6
            foreign, available = account.foreign()
            redis_used = _redis_cpu() - redis0
            vault_calls = len(fake.calls())
            retry_after = throttle_check(port, right, wrong)
            # A blocked caller hammering the channel: every request refused before any password hash.
            blocked = wrk(binary, port, "/st/basic", wrong["basic"], CONNECTIONS[0], slice_s)
        finally:
            if token and server.alive():
                jwt_log_out(port, token)
            server.stop()
    finally:
        fake.stop()

    labels = {key: label for key, label, _ in CHANNELS}
    rows = []
    ratios: dict[tuple[str, int], float] = {}
    for connections in CONNECTIONS:
        base = results["open", connections]["rps"]
        for key in KEYS:
            r = results[key, connections]
            ratio = r["rps"] / base
            if key != "open":
                ratios[key, connections] = ratio
            rows.append(
                [
                    f"{key}: {labels[key]}",
                    connections,
                    f"{r['rps']:,.0f}",
                    f"{r['min']:,.0f}-{r['max']:,.0f}",
                    f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}",
                    f"{r['cpu_us']:.0f}",
                    r["non2xx"],
                    r["errors"],
                    f"{ratio:.2f}",
                ]
            )
    print(
        common.table(
            [
                "target",
                "conns",
                "req/s",
                "slices req/s",
                "p50 ms",
                "p99 ms",
                "server CPU us/req",
                "non-2xx",
                "errors",
                "ratio to open",
            ],
            rows,
        )
    )
    print(
        "secured / open ratios: "
        + ", ".join(f"{k}@{c}={v:.2f}" for (k, c), v in ratios.items())
        + f"   (target >= {TARGET_RATIO} for every type)"
    )
    print(
        f"vault: figures with the result cache on (cache_ttl {secrets['vault_cache_ttl']} s, per process) against "
        f"a loopback fake Vault (tests/servers/vault.py) in the benchmark process; it was asked {vault_calls} "
        f"time(s) during the measurement. Without the cache every request is one Vault login round trip."
    )
    failures = sum(r["non2xx"] + r["errors"] for r in results.values())
    if failures:
        print(f"WARNING: {failures} failed requests (non-2xx, connect errors or timeouts); see {server.log_path}")
    share = foreign / available if available else 0.0
    print(
        f"CPU used by other processes during the measurement: {foreign:.1f} s of {available:.0f} s available "
        f"({share:.0%}; of which redis-server, serving the JWT sessions: {redis_used:.1f} s)"
        + (
            " -- WARNING: figures disturbed by other work on this machine"
            if foreign - redis_used > 0.05 * available
            else ""
        )
    )
    print(
        f"brute-force limits in place: after {MAX_FAILURES} wrong passwords the right one got 429 (Retry-After "
        f"{retry_after} s); a blocked caller at {CONNECTIONS[0]} connections was refused at {blocked['rps']:,.0f} "
        f"req/s ({blocked['rps'] / results['open', CONNECTIONS[0]]['rps']:.2f} of the open channel), no password "
        f"hashed"
    )
    worst_key, worst_c = min(ratios, key=ratios.get)
    reached = ratios[worst_key, worst_c] >= TARGET_RATIO and failures == 0
    return (
        f"worst secured/open ratio {ratios[worst_key, worst_c]:.2f} ({worst_key} at {worst_c} conns; "
        f"target >= {TARGET_RATIO} for basic, tech_acc, apikey, jwt, vault; vault with its cache on, "
        f"fake Vault on loopback; brute-force limits on, 429 after {MAX_FAILURES} failures)",
        reached,
    )


if __name__ == "__main__":
    common.run(main)
