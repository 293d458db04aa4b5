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

    .venv/bin/python -m bench.launch --concurrency 1,16,64 --count 3000 --peer pylti1p3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
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
    execute,
    infrastructure,
    measure,
    percentile,
    pin,
    start_service,
    tree_rss_mb,
    wait_ready,
)
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
        asyncio.run(_client(target, warmup, min(concurrency, 16), offset + 10_000_000))
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
    parser.add_argument("--database-url")
    parser.add_argument("--kafka")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--pin needs two CPUs")
    if args.peer:
        peer_tool.ensure_venv()  # before anything is measured

    from shared.dev.embedded import free_port

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
    with infrastructure(args.database_url, args.kafka) as stack:
        if args.pin:
            stack.cpus = SERVICE_CPUS
            for pid in (stack.postgres_pid, stack.broker_pid):
                if pid:
                    pin(pid, SERVICE_CPUS)
        asyncio.run(
            execute(
                stack.database_url,
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
        )
        # The launch URL is the region's base URL; login redirects the platform there.
        base = f"http://127.0.0.1:{free_port()}"
        region_env = {
            "ATTUNE_PUBLIC_URL": base,
            "ATTUNE_REGIONS": f"bench={base}",
            "ATTUNE_REGION": "bench",
        }
        start_service(stack, "launch", region_env, port=int(base.rsplit(":", 1)[1]))
        start_service(stack, "login", region_env)
        asyncio.run(wait_ready(stack))
        idle_rss = {name: tree_rss_mb(stack.pid(name)) for name in stack.services}
        target = Target(
            kind="attune",
            login_url=f"{stack.url('login')}/lti/login",
            launch_url=f"{base}/lti/launch",
            app_url=f"{base}/app",
            pem=pem,
            login_method=args.login_method,
            pinned=args.pin,
        )
        groups = {name: stack.pid(name) for name in stack.services}
        if stack.postgres_pid:
            groups["postgres"] = stack.postgres_pid
        if stack.broker_pid:
            groups["broker"] = stack.broker_pid
        for i, level in enumerate(levels):
            rows.append(
                run_level(target, groups, level, args.count, args.warmup, args.procs, i * 10**6)
            )
            rows[-1]["idle_rss_mb"] = idle_rss
        # One relay batch marks its rows sent in one transaction: one distinct sent_at each.
        batches = asyncio.run(
            execute(
                stack.database_url,
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
        # each. The level is in the subject (user-<level * 10**6 + n>).
        statements = asyncio.run(
            execute(
                stack.database_url,
                "SELECT coalesce(json_agg(json_build_array(level, n, s) ORDER BY level), '[]')"
                "::text FROM (SELECT substr(subject, 6)::bigint / 1000000 AS level,"
                " count(*) AS n, count(DISTINCT created_at) AS s FROM launches"
                " WHERE subject ~ '^user-[0-9]+$' GROUP BY 1) per_level",
            )
        )
        for level_index, launches, writes in json.loads(str(statements)):
            if level_index >= len(levels):
                continue  # warm-up launches
            print(
                f"launch records at c={levels[level_index]}: {launches} in {writes} statements "
                f"({launches / max(writes, 1):.1f} per statement)",
                flush=True,
            )
        if args.scale:
            started = time.perf_counter()
            asyncio.run(_fill(stack.database_url, jwks_url, args.platforms, args.nonces))
            print(f"scale: store filled in {time.perf_counter() - started:.0f} s", flush=True)
            target = replace(target, platforms=min(args.active_platforms, args.platforms))
            for i, level in enumerate(levels):
                for with_purge in (False, True):
                    # Then again while the launch service's own purge routine deletes one
                    # minute of expired nonces (its 60 s timer may not fire in the run).
                    purge: dict[str, float] = {}
                    purger = threading.Thread(
                        target=_purge_during, args=(stack.database_url, purge), daemon=True
                    )
                    if with_purge:
                        purger.start()
                    rows.append(
                        run_level(
                            target,
                            groups,
                            level,
                            args.count,
                            max(args.warmup, target.platforms),  # every active platform cached
                            args.procs,
                            (50 + 2 * i + with_purge) * 10**6,
                        )
                    )
                    if with_purge:
                        purger.join(600)
                    rows[-1]["tool"] = "attune-scale+purge" if with_purge else "attune-scale"
                    rows[-1]["purge"] = purge
                    rows[-1]["store"] = asyncio.run(_store_size(stack.database_url))
                rows[-1]["store"] = asyncio.run(_store_size(stack.database_url))
    if args.peer:
        port = free_port()
        proc = peer_tool.start(
            port=port,
            issuer=ISSUER,
            client_id=CLIENT_ID,
            deployment_id=DEPLOYMENT,
            jwks_url=jwks_url,
            cpus=SERVICE_CPUS if args.pin else None,
        )
        try:
            target = Target(
                kind="pylti1p3",
                login_url=f"http://127.0.0.1:{port}/login/",
                launch_url=f"http://127.0.0.1:{port}/launch/",
                app_url=f"http://127.0.0.1:{port}/launch/",
                pem=pem,
                login_method=args.login_method,
                pinned=args.pin,
            )
            for i, level in enumerate(levels):
                rows.append(
                    run_level(
                        target,
                        {"gunicorn": proc.pid},
                        level,
                        args.count,
                        args.warmup,
                        args.procs,
                        (len(levels) + i) * 10**6,
                    )
                )
        finally:
            peer_tool.stop(proc)
    print(table(rows, pinned=args.pin))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)


async def _fill(database_url: str, jwks_url: str, platforms: int, nonces: int) -> None:
    """The registration store and nonce table of a big installation at steady state.

    ``platforms`` registrations with a deployment each (sharing the benchmark's JWKS, as hosted
    Canvas schools share Instructure's), ``nonces`` live used nonces (more than the ~280,000 a
    steady 750 launches/s keeps; none expires during the run), one minute of expired ones for
    the purge, and ``nonces`` launch records.
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
        # What expires between two runs of the launch service's minutely purge at ~750
        # launches/s: the purge deletes it during the measured launches.
        await conn.execute(
            "INSERT INTO used_nonces (nonce, expires_at) "
            "SELECT 'expired-' || i, now() - random() * interval '60 s' "
            "FROM generate_series(1, $1::int) AS i ON CONFLICT DO NOTHING",
            EXPIRED_PER_MINUTE,
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
        await conn.execute("VACUUM ANALYZE")
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


def table(rows: list[dict[str, Any]], *, pinned: bool = False) -> str:
    def p(ms: dict[Any, float]) -> str:
        return f"{ms[50]:.1f} / {ms[95]:.1f} / {ms[99]:.1f}"

    lines = [
        f"Launch benchmark{' (pinned: services on CPU 1, generator on CPU 0)' if pinned else ''}",
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
    attune = {r["concurrency"]: r for r in rows if r["tool"] == "attune"}
    scaled = {r["concurrency"]: r for r in rows if r["tool"] == "attune-scale"}
    purged = {r["concurrency"]: r for r in rows if r["tool"] == "attune-scale+purge"}
    peers = {r["concurrency"]: r for r in rows if not r["tool"].startswith("attune")}
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
    if peers:
        lines += [
            "",
            "| c | throughput Attune ÷ pylti1p3 | CPU per launch pylti1p3 ÷ Attune "
            "| launch p99 pylti1p3 ÷ Attune |",
            "|---|---|---|---|",
        ]
        for c, a in attune.items():
            if c not in peers:
                continue
            b = peers[c]
            lines.append(
                f"| {c} | {a['launches_per_s'] / b['launches_per_s']:.2f}x "
                f"| {tool_cpu(b) / tool_cpu(a):.2f}x "
                f"| {b['ms']['launch'][99] / a['ms']['launch'][99]:.2f}x |"
            )
    if scaled:
        store = next(iter(scaled.values())).get("store", {})
        lines += [
            "",
            "Scale: " + ", ".join(f"{k} {v:,}" for k, v in store.items()) + " (after the run)",
            *(
                f"c={c}: {r['purge'].get('deleted', 0):,.0f} expired nonces purged in "
                f"{r['purge'].get('seconds', 0):.1f} s during the measured launches"
                for c, r in purged.items()
                if r.get("purge")
            ),
            "",
            "| c | big store | CPU per launch big ÷ small | launch p99 big ÷ small "
            "| login p99 big ÷ small | generator CPU big ÷ small (same work: the machine's "
            "noise) |",
            "|---|---|---|---|---|---|",
        ]
        for label, table_rows in (("at rest", scaled), ("while purging", purged)):
            for c, big in table_rows.items():
                if c not in attune:
                    continue
                small = attune[c]
                gauge = (
                    big["cpu_ms_per_launch"]["generator"] / small["cpu_ms_per_launch"]["generator"]
                )
                lines.append(
                    f"| {c} | {label} | {tool_cpu(big) / tool_cpu(small):.2f}x "
                    f"| {big['ms']['launch'][99] / small['ms']['launch'][99]:.2f}x "
                    f"| {big['ms']['login'][99] / small['ms']['login'][99]:.2f}x | {gauge:.2f}x |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
