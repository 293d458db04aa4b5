"""Complete LTI launches (login initiation + id_token POST) against the real services.

Starts embedded Postgres and broker (or uses --database-url/--kafka), migrates, registers a
platform whose JWKS this process serves, runs the login and launch services as their own
processes, and drives complete launches from client processes: every launch is a new browser
(own cookie), a real RS256 id_token signed with the nonce the login issued, and counts only when
the launch answers 303 to the app with a launch token. Prints launches/s, p50/p95/p99 per step,
CPU-ms per launch per process group and RSS.

With ``--peer pylti1p3`` the same generator then drives the pylti1p3 peer (bench/peer.py) in
the same invocation and the ratios are printed. ``--pin`` puts the services (and Postgres and
the broker, or the peer) on CPU 1 and the generator on CPU 0.

With ``--cell`` a second region runs next to the first: its own Postgres and broker, its own
login and launch, its registrations a mirror of the home region's (the real registration
service publishes them; the cell's launch reads them from the home broker through a
``devstack.wan.WanLink`` adding ``--wan-ms`` each way). Rounds alternate the single-region
launch and the cell's, and the cell ÷ single-region ratios are printed.

    .venv/bin/python -m bench.launch --concurrency 1,16,64 --count 3000 --peer pylti1p3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench import peer as peer_tool
from bench.harness import (
    add_postgres_options,
    execute,
    infrastructure,
    measure,
    percentile,
    pin,
    start_service,
    tree_rss_mb,
    wait_ready,
)
from shared.migrate import upgrade
from shared.signing import b64url

ISSUER = "https://platform.bench.example"
CLIENT_ID = "bench-client"
DEPLOYMENT = "bench-deployment"
KID = "bench-kid-1"


GENERATOR_CPUS = {0}
SERVICE_CPUS = {1}


@dataclass(frozen=True)
class Target:
    """What the generator drives. ``kind`` decides what a completed launch looks like:
    Attune answers the id_token POST with a 303 to its app carrying the launch token; the
    pylti1p3 peer with a 200 page showing the user's name."""

    kind: str  # "attune" | "pylti1p3"
    login_url: str
    launch_url: str
    app_url: str
    pem: bytes
    login_method: str = "POST"
    pinned: bool = False
    platforms: int = 1  # launches are spread over this many registered platforms


def issuer_for(target: Target, n: int) -> str:
    index = n % target.platforms
    return ISSUER if index == 0 else f"https://p{index}.bench.example"


def _claims(nonce: str, n: int, target: str, issuer: str) -> dict[str, Any]:
    now = int(time.time())
    lti = "https://purl.imsglobal.org/spec/lti/claim/"
    return {
        "iss": issuer,
        "aud": CLIENT_ID,
        "azp": CLIENT_ID,
        "sub": f"user-{n}",
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
        "name": f"Bench User {n}",
        lti + "message_type": "LtiResourceLinkRequest",
        lti + "version": "1.3.0",
        lti + "deployment_id": DEPLOYMENT,
        lti + "target_link_uri": target,
        lti + "resource_link": {"id": "rl-1"},
        lti + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
        lti + "context": {"id": "course-1", "title": "Bench"},
    }


def _sign(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{b64url(signature)}"


async def _client(target: Target, count: int, concurrency: int, offset: int) -> dict[str, Any]:
    key = serialization.load_pem_private_key(target.pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    connector = aiohttp.TCPConnector(limit=0)
    timings: dict[str, list[float]] = {"login": [], "launch": [], "e2e": []}
    errors: dict[str, int] = {}
    remaining = iter(range(count))

    def error(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(n: int) -> None:
            issuer = issuer_for(target, n)
            params = {
                "iss": issuer,
                "login_hint": f"user-{n}",
                "target_link_uri": target.app_url,
                "client_id": CLIENT_ID,
                "lti_deployment_id": DEPLOYMENT,
            }
            if target.login_method == "POST":
                login = session.post(target.login_url, data=params, allow_redirects=False)
            else:
                login = session.get(target.login_url, params=params, allow_redirects=False)
            t0 = time.perf_counter()
            async with login as resp:
                location = resp.headers.get("Location", "")
                # Every launch is a new browser: it sends back exactly what this login set.
                cookie = "; ".join(
                    c.split(";", 1)[0] for c in resp.headers.getall("Set-Cookie", ())
                )
                status = resp.status
                await resp.read()
            t1 = time.perf_counter()
            if status not in (302, 303):
                return error(f"login_{status}")
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            if "nonce" not in query or "state" not in query:
                return error("login_no_state")
            token = _sign(key, _claims(query["nonce"], n, target.app_url, issuer))
            t2 = time.perf_counter()
            async with session.post(
                target.launch_url,
                data={"id_token": token, "state": query["state"]},
                headers={"Cookie": cookie},
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                status = resp.status
                if target.kind == "attune":
                    ok = status == 303 and "#lt=" in resp.headers.get("Location", "")
                else:
                    ok = status == 200 and f"Bench User {n}".encode() in body
            t3 = time.perf_counter()
            if not ok:
                return error(f"launch_{status}")
            timings["login"].append(t1 - t0)
            timings["launch"].append(t3 - t2)
            timings["e2e"].append(t3 - t0 - (t2 - t1))  # without the generator's signing

        async def worker() -> None:
            for n in remaining:
                await one(offset + n)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"timings": timings, "errors": errors}


def _client_process(
    target: Target, count: int, concurrency: int, offset: int, barrier: Any, out: Any
) -> None:
    if target.pinned:
        os.sched_setaffinity(0, GENERATOR_CPUS)
    barrier.wait()
    out.put(asyncio.run(_client(target, count, concurrency, offset)))


def run_level(
    target: Target,
    groups: dict[str, int],
    concurrency: int,
    count: int,
    warmup: int,
    procs: int,
    offset: int,
) -> dict[str, Any]:
    """One concurrency level. ``groups``: name → root pid whose process tree's CPU is counted."""
    if warmup:
        # Warm-up subjects are 500 slots up: never those of a measured level.
        asyncio.run(_client(target, warmup, min(concurrency, 16), offset + 500 * 10**6))
    procs = max(1, min(procs, concurrency))
    run = measure(
        _client_process,
        [
            (target, count // procs, max(1, concurrency // procs), offset + i * count)
            for i in range(procs)
        ],
        groups,
    )
    timings: dict[str, list[float]] = {"login": [], "launch": [], "e2e": []}
    errors: dict[str, int] = {}
    for r in run.results:
        for k, v in r["timings"].items():
            timings[k].extend(v)
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    ok = len(timings["e2e"])
    per = max(ok, 1)
    return {
        "tool": target.kind,
        "concurrency": concurrency,
        "launches": ok,
        "errors": errors,
        "seconds": run.seconds,
        "launches_per_s": ok / run.seconds,
        "ms": {
            step: {q: percentile(v, q) * 1000 for q in (50, 95, 99)} for step, v in timings.items()
        },
        "cpu_ms_per_launch": {
            **{name: cpu * 1000 / per for name, cpu in run.cpu.items()},
            "generator": run.generator_cpu * 1000 / per,
        },
        # Postgres and the broker share memory between processes: their RSS is not comparable.
        "rss_mb": {
            name: tree_rss_mb(pid)
            for name, pid in groups.items()
            if name not in ("postgres", "broker")
        },
    }


def _serve_jwks(jwk: dict[str, str], port: int) -> None:
    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()


def _start_link(port: int, delay_s: float) -> Any:
    """A WanLink to ``port`` on its own event loop thread (the services are other processes)."""
    from devstack.wan import WanLink

    loop = asyncio.new_event_loop()
    link = WanLink("127.0.0.1", port, delay_s=delay_s, kafka=True)
    loop.run_until_complete(link.start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return link


_links: list[Any] = []


def _start_cell(
    home: Any, cell: Any, pem: bytes, args: argparse.Namespace
) -> tuple[Target, dict[str, int]]:
    """The home region's registration service and a cell (login, launch with its mirror) on
    ``cell``'s Postgres and broker, the two joined by WanLinks; returns the cell's target."""
    from devstack.embedded import free_port

    delay = args.wan_ms / 1000
    home_base = f"http://127.0.0.1:{free_port()}"
    cell_base = f"http://127.0.0.1:{free_port()}"
    regions = f"home={home_base},cell={cell_base}"
    to_home = _start_link(int(home.env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]), delay)
    from_home = _start_link(int(cell.env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]), delay)
    home_env = {
        "ATTUNE_PUBLIC_URL": home_base,
        "ATTUNE_REGIONS": regions,
        "ATTUNE_REGION": "home",
        "ATTUNE_CELL_KAFKA": f"cell={from_home.address}",
    }
    start_service(home, "registration", home_env)
    cell_env = {
        "ATTUNE_PUBLIC_URL": home_base,
        "ATTUNE_REGIONS": regions,
        "ATTUNE_REGION": "cell",
        "ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS": to_home.address,
    }
    # Ready once its mirror applied the home region's snapshot (nothing registered by hand).
    target, groups = _start_attune(cell, pem, args, suffix="-cell", env=cell_env, base=cell_base)
    mirrored = asyncio.run(
        execute(cell.database_url, "SELECT count(*) FROM platforms WHERE issuer = $1", ISSUER)
    )
    assert mirrored == 1, "the cell's mirror has not got the registration"
    _links.extend([to_home, from_home])  # they live as long as the benchmark
    return target, groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="16", help="comma-separated levels")
    parser.add_argument("--count", type=int, default=3000, help="measured launches per level")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--login-method", choices=("POST", "GET"), default="POST")
    parser.add_argument("--peer", choices=("pylti1p3",), help="also drive this peer tool")
    parser.add_argument("--pin", action="store_true", help="services on CPU 1, generator on 0")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="then fill the store (--platforms, --nonces) and run the levels again",
    )
    parser.add_argument("--platforms", type=int, default=10_000, help="registered, for --scale")
    parser.add_argument(
        "--active-platforms", type=int, default=1000, help="launching during --scale"
    )
    parser.add_argument("--nonces", type=int, default=1_000_000, help="used nonces, for --scale")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds alternating Attune and --peer (and --scale's small and big stores)",
    )
    add_postgres_options(parser)
    parser.add_argument("--kafka")
    parser.add_argument(
        "--cell",
        action="store_true",
        help="also run a cell of another region (its own Postgres and broker, registrations "
        "mirrored from home through a --wan-ms relay) in rounds alternating with the first",
    )
    parser.add_argument("--wan-ms", type=float, default=150.0, help="--cell: delay each way")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if args.cell and (args.peer or args.scale or args.database_url or args.kafka):
        raise SystemExit("--cell runs its own embedded infrastructure, without --peer/--scale")
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--pin needs two CPUs")
    if args.peer:
        peer_tool.ensure_venv()  # before anything is measured

    from devstack.embedded import free_port

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": KID,
        "alg": "RS256",
        "use": "sig",
        "n": b64url(numbers.n.to_bytes(256, "big")),
        "e": b64url(numbers.e.to_bytes(3, "big")),
    }
    if args.pin:
        os.sched_setaffinity(0, GENERATOR_CPUS)  # this process serves the platform's JWKS
    jwks_port = free_port()
    jwks_url = f"http://127.0.0.1:{jwks_port}/jwks.json"
    _serve_jwks(jwk, jwks_port)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    rows: list[dict[str, Any]] = []
    with ExitStack() as regions:
        stack = regions.enter_context(
            infrastructure(args.database_url, args.kafka, fast_postgres=args.fast_postgres)
        )
        cell = (
            regions.enter_context(infrastructure(None, None, fast_postgres=args.fast_postgres))
            if args.cell
            else None
        )
        if args.pin:
            stack.cpus = SERVICE_CPUS
            for pid in (stack.postgres_pid, stack.broker_pid):
                if pid:
                    pin(pid, SERVICE_CPUS)
        asyncio.run(_register(stack.database_url, jwks_url))
        target, groups = _start_attune(stack, pem, args)
        idle_rss = {name: tree_rss_mb(stack.pid(name)) for name in stack.services}
        with ExitStack() as peer_running:
            drivers: list[tuple[Target, dict[str, int]]] = [(target, groups)]
            if args.peer:
                # Started now and driven in turns with Attune: each round runs Attune, then
                # the peer, back to back, so both see the same machine (its noise, other
                # tenants, moves single runs by 15% and more).
                port = free_port()
                proc = peer_tool.start(
                    port=port,
                    issuer=ISSUER,
                    client_id=CLIENT_ID,
                    deployment_id=DEPLOYMENT,
                    jwks_url=jwks_url,
                    cpus=SERVICE_CPUS if args.pin else None,
                )
                peer_running.callback(peer_tool.stop, proc)
                peer = Target(
                    kind="pylti1p3",
                    login_url=f"http://127.0.0.1:{port}/login/",
                    launch_url=f"http://127.0.0.1:{port}/launch/",
                    app_url=f"http://127.0.0.1:{port}/launch/",
                    pem=pem,
                    login_method=args.login_method,
                    pinned=args.pin,
                )
                drivers.append((peer, {"gunicorn": proc.pid}))
            cell_target = None
            if cell is not None:
                # Started now and driven in turns with the single-region launch above.
                cell_target, cell_groups = _start_cell(stack, cell, pem, args)
                drivers.append((cell_target, cell_groups))
            rounds = args.rounds if args.peer or args.cell else 1
            slot_levels: dict[int, int] = {}  # subject offset // 10**6 -> concurrency
            for level in levels:
                for round_ in range(1, rounds + 1):
                    # --cell: the two regions in turn, the first of a round alternating (ABBA),
                    # so neither is always the one that runs right after the other.
                    order = drivers[::-1] if args.cell and round_ % 2 == 0 else drivers
                    for driven, driven_groups in order:
                        slot = len(slot_levels)
                        slot_levels[slot] = level
                        row = run_level(
                            driven,
                            driven_groups,
                            level,
                            args.count,
                            args.warmup,
                            args.procs,
                            slot * 10**6,
                        )
                        row["round"] = round_
                        if driven is cell_target:
                            row["tool"] = "attune-cell"
                        elif driven.kind == "attune":
                            row["idle_rss_mb"] = idle_rss
                        rows.append(row)
        _print_write_batches(stack.database_url, slot_levels)
        if args.scale:
            rows += _scale(stack, target, groups, jwks_url, pem, levels, args)
    print(table(rows, pinned=args.pin, durability=stack.durability))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(
                {"args": vars(args), "durability": stack.durability, "rows": rows}, fh, indent=2
            )


def _print_write_batches(database_url: str, slot_levels: dict[int, int]) -> None:
    """Events per relay batch, and launch records per statement (group commit) per level."""
    # One relay batch marks its rows sent in one transaction: one distinct sent_at each.
    batches = asyncio.run(
        execute(
            database_url,
            "SELECT json_build_object('events', count(*), 'batches', count(DISTINCT sent_at))"
            "::text FROM outbox WHERE sent_at IS NOT NULL",
        )
    )
    relay = json.loads(str(batches))
    print(
        f"relay: {relay['events']} events in {relay['batches']} batches "
        f"({relay['events'] / max(relay['batches'], 1):.1f} events per batch)",
        flush=True,
    )
    # A statement records a batch of launches in one transaction: one distinct created_at
    # each. The level's slot is in the subject (user-<slot * 10**6 + n>).
    statements = asyncio.run(
        execute(
            database_url,
            "SELECT coalesce(json_agg(json_build_array(slot, n, s) ORDER BY slot), '[]')"
            "::text FROM (SELECT substr(subject, 6)::bigint / 1000000 AS slot,"
            " count(*) AS n, count(DISTINCT created_at) AS s FROM launches"
            " WHERE subject ~ '^user-[0-9]+$' GROUP BY 1) per_slot",
        )
    )
    per_level: dict[int, list[int]] = {}
    for slot, launches, writes in json.loads(str(statements)):
        if slot in slot_levels:  # not the warm-up launches
            totals = per_level.setdefault(slot_levels[slot], [0, 0])
            totals[0] += launches
            totals[1] += writes
    for level, (launches, writes) in per_level.items():
        print(
            f"launch records at c={level}: {launches} in {writes} statements "
            f"({launches / max(writes, 1):.1f} per statement)",
            flush=True,
        )


async def _register(database_url: str, jwks_url: str) -> None:
    await execute(
        database_url,
        "WITH p AS (INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, product) "
        "VALUES ($1, $2, 'https://platform.bench.example/auth', $3, 'generic') "
        "ON CONFLICT (issuer, client_id) DO UPDATE SET jwks_url = excluded.jwks_url "
        "RETURNING id) INSERT INTO deployments (platform_id, deployment_id) "
        "SELECT id, $4 FROM p ON CONFLICT DO NOTHING RETURNING 1",
        ISSUER,
        CLIENT_ID,
        jwks_url,
        DEPLOYMENT,
    )


def _start_attune(
    stack: Any,
    pem: bytes,
    args: argparse.Namespace,
    *,
    suffix: str = "",
    env: dict[str, str] | None = None,
    base: str | None = None,
) -> tuple[Target, dict[str, int]]:
    """Start a login and a launch service (named ``login<suffix>``, ``launch<suffix>``);
    returns the generator's target and the process groups whose CPU is counted."""
    from devstack.embedded import free_port

    # The launch URL is the region's base URL; login redirects the platform there.
    base = base or f"http://127.0.0.1:{free_port()}"
    region_env = {
        "ATTUNE_PUBLIC_URL": base,
        "ATTUNE_REGIONS": f"bench={base}",
        "ATTUNE_REGION": "bench",
        **(env or {}),
    }
    start_service(
        stack, f"launch{suffix}", region_env, port=int(base.rsplit(":", 1)[1]), service="launch"
    )
    start_service(stack, f"login{suffix}", region_env, service="login")
    asyncio.run(wait_ready(stack))
    target = Target(
        kind="attune",
        login_url=f"{stack.url(f'login{suffix}')}/lti/login",
        launch_url=f"{base}/lti/launch",
        app_url=f"{base}/app",
        pem=pem,
        login_method=args.login_method,
        pinned=args.pin,
    )
    groups = {"launch": stack.pid(f"launch{suffix}"), "login": stack.pid(f"login{suffix}")}
    if stack.postgres_pid:
        groups["postgres"] = stack.postgres_pid
    if stack.broker_pid:
        groups["broker"] = stack.broker_pid
    return target, groups


def _scale(
    stack: Any,
    small: Target,
    small_groups: dict[str, int],
    jwks_url: str,
    pem: bytes,
    levels: list[int],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The small and the big store side by side, alternating.

    The big store is a second database in the same Postgres with its own login and launch
    services. Each round runs the small case, the big store at rest and the big store while
    its expired nonces are purged, back to back, so the three see the same machine: this
    machine's noise (other tenants) moves single runs by 15% and more, far more than the
    difference being measured. The table reports each round's ratios and their median.
    """
    big_url = asyncio.run(_create_database(stack.database_url, "big"))
    upgrade(big_url)
    asyncio.run(_register(big_url, jwks_url))
    started = time.perf_counter()
    asyncio.run(_fill(big_url, jwks_url, args.platforms, args.nonces))
    print(f"scale: store filled in {time.perf_counter() - started:.0f} s", flush=True)
    big, big_groups = _start_attune(stack, pem, args, suffix="-big", env={"DATABASE_URL": big_url})
    big = replace(big, platforms=min(args.active_platforms, args.platforms))
    rows: list[dict[str, Any]] = []
    offset = 50
    for level in levels:
        for round_ in range(1, args.rounds + 1):
            asyncio.run(_expire_one_minute(big_url, round_))
            for tool, target, groups, with_purge in (
                ("attune-small", small, small_groups, False),
                ("attune-scale", big, big_groups, False),
                ("attune-scale+purge", big, big_groups, True),
            ):
                # With purge: the launch service's own purge routine deletes one minute of
                # expired nonces during the level (its 60 s timer may not fire in the run).
                purge: dict[str, float] = {}
                purger = threading.Thread(target=_purge_during, args=(big_url, purge), daemon=True)
                if with_purge:
                    purger.start()
                warmup = max(args.warmup, target.platforms)  # every active platform cached
                offset += 1
                row = run_level(
                    target, groups, level, args.count, warmup, args.procs, offset * 10**6
                )
                if with_purge:
                    purger.join(600)
                row.update(tool=tool, round=round_, purge=purge)
                if tool != "attune-small":
                    row["store"] = asyncio.run(_store_size(big_url))
                rows.append(row)
    return rows


async def _create_database(database_url: str, name: str) -> str:
    """A fresh database next to ``database_url``'s; returns its URL."""
    conn = await asyncpg.connect(database_url)
    try:
        db = f"{await conn.fetchval('SELECT current_database()')}_{name}"
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    parts = urlsplit(database_url)
    return parts._replace(path=f"/{db}").geturl()


async def _expire_one_minute(database_url: str, round_: int) -> None:
    """What expires between two runs of the launch service's minutely purge at ~750
    launches/s, for this round's purge level."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO used_nonces (nonce, expires_at) "
            "SELECT 'expired-' || $2::int || '-' || i, now() - random() * interval '60 s' "
            "FROM generate_series(1, $1::int) AS i ON CONFLICT DO NOTHING",
            EXPIRED_PER_MINUTE,
            round_,
        )
    finally:
        await conn.close()


async def _fill(database_url: str, jwks_url: str, platforms: int, nonces: int) -> None:
    """The registration store and nonce table of a big installation at steady state.

    ``platforms`` registrations with a deployment each (sharing the benchmark's JWKS, as hosted
    Canvas schools share Instructure's), ``nonces`` live used nonces (more than the ~280,000 a
    steady 750 launches/s keeps; none expires during the run) and ``nonces`` launch records.
    Each round of ``_scale`` adds one minute of expired nonces for its purge level.
    """
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, product) "
            "SELECT 'https://p' || i || '.bench.example', $1, "
            "'https://platform.bench.example/auth', $2, 'generic' "
            "FROM generate_series(1, $3::int - 1) AS i ON CONFLICT DO NOTHING",
            CLIENT_ID,
            jwks_url,
            platforms,
        )
        await conn.execute(
            "INSERT INTO deployments (platform_id, deployment_id) "
            "SELECT id, $1 FROM platforms ON CONFLICT DO NOTHING",
            DEPLOYMENT,
        )
        await conn.execute(
            "INSERT INTO used_nonces (nonce, expires_at) "
            "SELECT md5(i::text) || '-' || i, "
            "now() + interval '370 s' + random() * interval '370 s' "
            "FROM generate_series(1, $1::int) AS i ON CONFLICT DO NOTHING",
            nonces,
        )
        await conn.execute(
            "INSERT INTO launches (id, platform_id, deployment_id, message_type, subject, "
            "context_id, resource_link_id, roles, region, created_at) "
            "SELECT gen_random_uuid(), p.id, $2, 'LtiResourceLinkRequest', 'user-' || i, "
            "'course-' || (i % 5000), 'rl-1', "
            "'{http://purl.imsglobal.org/vocab/lis/v2/membership#Learner}', 'bench', "
            "now() - (i % 86400) * interval '1 s' "
            "FROM generate_series(1, $1::int) AS i "
            "JOIN platforms p ON p.id = (SELECT min(id) FROM platforms) + i % $3::int",
            nonces,
            DEPLOYMENT,
            platforms,
        )
        # Steady state: what autovacuum, analyze and the checkpointer would have done long
        # before a real store got this big is done now, not during the measured launches.
        await conn.execute("VACUUM ANALYZE")
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            pass  # a given --database-url without superuser: the next timed checkpoint does it
    finally:
        await conn.close()


def _purge_during(database_url: str, out: dict[str, float]) -> None:
    from services.launch.queries import purge_expired_nonces

    async def purge() -> None:
        await asyncio.sleep(1.0)  # into the measured phase
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            started = time.perf_counter()
            out["deleted"] = await purge_expired_nonces(pool)
            out["seconds"] = time.perf_counter() - started
        finally:
            await pool.close()

    asyncio.run(purge())


async def _store_size(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM platforms) AS platforms, "
            "(SELECT count(*) FROM used_nonces) AS used_nonces, "
            "(SELECT count(*) FROM used_nonces WHERE expires_at < now()) AS expired_nonces, "
            "(SELECT count(*) FROM launches) AS launches"
        )
        return dict(row)
    finally:
        await conn.close()


EXPIRED_PER_MINUTE = 45_000
ATTUNE_TOOL = ("login", "launch", "postgres")  # every Attune process on the path, and Postgres


def tool_cpu(row: dict[str, Any]) -> float:
    cpu = row["cpu_ms_per_launch"]
    if row["tool"].startswith("attune"):
        return float(sum(cpu.get(name, 0.0) for name in ATTUNE_TOOL))
    return float(cpu["gunicorn"])


def table(rows: list[dict[str, Any]], *, pinned: bool = False, durability: str = "") -> str:
    def p(ms: dict[Any, float]) -> str:
        return f"{ms[50]:.1f} / {ms[95]:.1f} / {ms[99]:.1f}"

    lines = [
        f"Launch benchmark{' (pinned: services on CPU 1, generator on CPU 0)' if pinned else ''}",
        durability,
        "",
        "| tool | c | launches/s | login p50/p95/p99 ms | launch p50/p95/p99 ms "
        "| tool CPU ms/launch | CPU ms/launch by process | RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu_ms_per_launch"]
        split = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        rss = ", ".join(f"{k} {v:.0f}" for k, v in r["rss_mb"].items())
        errors = sum(r["errors"].values())
        lines.append(
            f"| {r['tool']} | {r['concurrency']} | {r['launches_per_s']:.0f} "
            f"| {p(r['ms']['login'])} | {p(r['ms']['launch'])} | **{tool_cpu(r):.2f}** "
            f"| {split} | {rss} "
            f"| {errors}{' ' + str(r['errors']) if errors else ''} |"
        )
    scaled = [r for r in rows if r["tool"] == "attune-scale"]
    idle = next((r.get("idle_rss_mb") for r in rows if r.get("idle_rss_mb")), None)
    lines.append("")
    lines.append(
        "tool CPU: Attune = login + launch + Postgres processes (the broker is shown apart); "
        "pylti1p3 = the gunicorn master and workers."
    )
    if idle:
        lines.append(
            "Idle RSS MB before load: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())
        )
    if any(not r["tool"].startswith("attune") for r in rows):
        lines += _peer_table(rows)
    if scaled:
        lines += _scale_table(rows)
    if any(r["tool"] == "attune-cell" for r in rows):
        lines += _cell_table(rows)
    return "\n".join(lines)


def _ratio_line(first: str, ratio: Sequence[float], *, bold: bool = False) -> str:
    """A table row: ``first`` (its leading cells), then each ratio as ``1.23x``."""
    shown = (f"**{x:.2f}x**" if bold else f"{x:.2f}x" for x in ratio)
    return f"| {first} | " + " | ".join(shown) + " |"


def _medians(values: list[tuple[float, ...]]) -> list[float]:
    return [statistics.median(v[i] for v in values) for i in range(len(values[0]))]


Row = dict[str, Any]


def _round_ratios(
    rows: list[Row],
    *,
    base: str,
    compared: Callable[[Row], bool],
    ratio: Callable[[Row, Row], tuple[float, ...]],
    label: str = "",
) -> list[str]:
    """One line per compared row: its ratios to the ``base`` tool's row of the same concurrency
    and round (the run right next to it); then, per concurrency, the median of the rounds."""
    bases = {(r["concurrency"], r.get("round")): r for r in rows if r["tool"] == base}
    lines: list[str] = []
    ratios: dict[int, list[tuple[float, ...]]] = {}
    for r in rows:
        b = bases.get((r["concurrency"], r.get("round")))
        if b is None or not compared(r):
            continue
        values = ratio(r, b)
        ratios.setdefault(r["concurrency"], []).append(values)
        lines.append(_ratio_line(f"{r['concurrency']}{label} | {r.get('round', 1)}", values))
    for c, values in ratios.items():
        lines.append(_ratio_line(f"{c}{label} | **median**", _medians(values), bold=True))
    return lines


def _cell_table(rows: list[Row]) -> list[str]:
    """Per round: the cell (registrations mirrored across the WAN link) ÷ the single-region
    launch run right before it; then the median of the rounds."""
    return [
        "",
        "| c | round | launch p99 cell ÷ single | CPU per launch cell ÷ single "
        "| throughput cell ÷ single | generator CPU cell ÷ single (same work: noise) |",
        "|---|---|---|---|---|---|",
        *_round_ratios(
            rows,
            base="attune",
            compared=lambda r: r["tool"] == "attune-cell",
            ratio=lambda c, s: (
                c["ms"]["launch"][99] / s["ms"]["launch"][99],
                tool_cpu(c) / tool_cpu(s),
                c["launches_per_s"] / s["launches_per_s"],
                c["cpu_ms_per_launch"]["generator"] / s["cpu_ms_per_launch"]["generator"],
            ),
        ),
    ]


def _peer_table(rows: list[Row]) -> list[str]:
    """Per round: Attune ÷ the peer run right after it; then the median of the rounds."""
    return [
        "",
        "| c | round | throughput Attune ÷ pylti1p3 | CPU per launch pylti1p3 ÷ Attune "
        "| launch p99 pylti1p3 ÷ Attune | generator CPU pylti1p3 ÷ Attune |",
        "|---|---|---|---|---|---|",
        *_round_ratios(
            rows,
            base="attune",
            compared=lambda r: not r["tool"].startswith("attune"),
            ratio=lambda b, a: (
                a["launches_per_s"] / b["launches_per_s"],
                tool_cpu(b) / tool_cpu(a),
                b["ms"]["launch"][99] / a["ms"]["launch"][99],
                b["cpu_ms_per_launch"]["generator"] / a["cpu_ms_per_launch"]["generator"],
            ),
        ),
    ]


def _scale_table(rows: list[Row]) -> list[str]:
    """Per round: big store ÷ the small case run right before it; then the median."""
    big = [r for r in rows if r["tool"] == "attune-scale"]
    store = big[-1].get("store", {})
    lines = [
        "",
        "Scale: " + ", ".join(f"{k} {v:,}" for k, v in store.items()) + " (after the run)",
        *(
            f"c={r['concurrency']} round {r['round']}: {r['purge'].get('deleted', 0):,.0f} "
            f"expired nonces purged in {r['purge'].get('seconds', 0):.1f} s during the launches"
            for r in rows
            if r["tool"] == "attune-scale+purge" and r.get("purge")
        ),
        "",
        "| c | big store | round | CPU per launch big ÷ small | launch p99 big ÷ small "
        "| login p99 big ÷ small | generator CPU big ÷ small (same work: the machine's "
        "noise) |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, label in (("attune-scale", "at rest"), ("attune-scale+purge", "while purging")):
        lines += _round_ratios(
            rows,
            base="attune-small",
            compared=lambda r, tool=tool: r["tool"] == tool,
            ratio=lambda r, small: (
                tool_cpu(r) / tool_cpu(small),
                r["ms"]["launch"][99] / small["ms"]["launch"][99],
                r["ms"]["login"][99] / small["ms"]["login"][99],
                r["cpu_ms_per_launch"]["generator"] / small["cpu_ms_per_launch"]["generator"],
            ),
            label=f" | {label}",
        )
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
