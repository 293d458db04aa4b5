"""Complete LTI launches (login initiation + id_token POST) against the real services.

Starts embedded Postgres and broker (or uses --database-url/--kafka), migrates, registers a
platform whose JWKS this process serves, runs the login and launch services as their own
processes, and drives complete launches from client processes: every launch is a new browser
(own cookie), a real RS256 id_token signed with the nonce the login issued, and counts only when
the launch answers 303 to the app with a launch token. Prints launches/s, p50/p95/p99 per step,
CPU-ms per launch per process group and RSS.

    .venv/bin/python bench/launch.py --concurrency 1,16,64 --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.harness import (
    Stack,
    cpu_seconds,
    execute,
    infrastructure,
    percentile,
    rss_mb,
    start_service,
    tree_cpu,
    wait_ready,
)
from shared.signing import b64url

ISSUER = "https://platform.bench.example"
CLIENT_ID = "bench-client"
DEPLOYMENT = "bench-deployment"
KID = "bench-kid-1"


@dataclass(frozen=True)
class Target:
    login_url: str
    launch_url: str
    app_url: str
    pem: bytes


def _claims(nonce: str, n: int, target: str) -> dict[str, Any]:
    now = int(time.time())
    lti = "https://purl.imsglobal.org/spec/lti/claim/"
    return {
        "iss": ISSUER,
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
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(n: int) -> None:
            params = {
                "iss": ISSUER,
                "login_hint": f"user-{n}",
                "target_link_uri": target.app_url,
                "client_id": CLIENT_ID,
                "lti_deployment_id": DEPLOYMENT,
            }
            t0 = time.perf_counter()
            async with session.get(target.login_url, params=params, allow_redirects=False) as resp:
                location = resp.headers.get("Location", "")
                cookie = resp.headers.get("Set-Cookie", "").split(";", 1)[0]
                status = resp.status
                await resp.read()
            t1 = time.perf_counter()
            if status != 302:
                errors[f"login_{status}"] = errors.get(f"login_{status}", 0) + 1
                return
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            token = _sign(key, _claims(query["nonce"], n, target.app_url))
            t2 = time.perf_counter()
            async with session.post(
                target.launch_url,
                data={"id_token": token, "state": query["state"]},
                headers={"Cookie": cookie},
                allow_redirects=False,
            ) as resp:
                ok = resp.status == 303 and "#lt=" in resp.headers.get("Location", "")
                status = resp.status
                await resp.read()
            t3 = time.perf_counter()
            if not ok:
                errors[f"launch_{status}"] = errors.get(f"launch_{status}", 0) + 1
                return
            timings["login"].append(t1 - t0)
            timings["launch"].append(t3 - t2)
            timings["e2e"].append(t3 - t0)

        async def worker() -> None:
            for n in remaining:
                await one(offset + n)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"timings": timings, "errors": errors}


def _client_process(
    target: Target, count: int, concurrency: int, offset: int, barrier: Any, out: Any
) -> None:
    barrier.wait()
    out.put(asyncio.run(_client(target, count, concurrency, offset)))


def run_level(
    stack: Stack, target: Target, concurrency: int, count: int, warmup: int, procs: int, offset: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    if warmup:
        asyncio.run(_client(target, warmup, min(concurrency, 16), offset + 10_000_000))
    procs = max(1, min(procs, concurrency))
    barrier = ctx.Barrier(procs + 1)
    out = ctx.Queue()
    workers = [
        ctx.Process(
            target=_client_process,
            args=(
                target,
                count // procs,
                max(1, concurrency // procs),
                offset + i * count,
                barrier,
                out,
            ),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    groups = {name: stack.pid(name) for name in stack.services}
    barrier.wait()
    started = time.perf_counter()
    cpu0 = {name: cpu_seconds(pid) for name, pid in groups.items()}
    db0 = tree_cpu(stack.postgres_pid) if stack.postgres_pid else 0.0
    gen0 = sum(cpu_seconds(w.pid) for w in workers if w.pid)
    results = [out.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    cpu1 = {name: cpu_seconds(pid) for name, pid in groups.items()}
    db1 = tree_cpu(stack.postgres_pid) if stack.postgres_pid else 0.0
    gen1 = sum(cpu_seconds(w.pid) for w in workers if w.pid)
    for w in workers:
        w.join(30)
    timings: dict[str, list[float]] = {"login": [], "launch": [], "e2e": []}
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["timings"].items():
            timings[k].extend(v)
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    ok = len(timings["e2e"])
    per = max(ok, 1)
    return {
        "concurrency": concurrency,
        "launches": ok,
        "errors": errors,
        "launches_per_s": ok / elapsed,
        "ms": {
            step: {q: percentile(v, q) * 1000 for q in (50, 95, 99)} for step, v in timings.items()
        },
        "cpu_ms_per_launch": {
            **{name: (cpu1[name] - cpu0[name]) * 1000 / per for name in groups},
            "postgres": (db1 - db0) * 1000 / per,
            "generator": (gen1 - gen0) * 1000 / per,
        },
        "rss_mb": {name: rss_mb(pid) for name, pid in groups.items()},
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
    parser.add_argument("--count", type=int, default=2000, help="measured launches per level")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--procs", type=int, default=1, help="client processes")
    parser.add_argument("--database-url")
    parser.add_argument("--kafka")
    parser.add_argument("--json-out")
    args = parser.parse_args()

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
    jwks_port = free_port()
    _serve_jwks(jwk, jwks_port)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    with infrastructure(args.database_url, args.kafka) as stack:
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
                f"http://127.0.0.1:{jwks_port}/jwks.json",
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
        target = Target(
            login_url=f"{stack.url('login')}/lti/login",
            launch_url=f"{base}/lti/launch",
            app_url=f"{base}/app",
            pem=pem,
        )
        rows = []
        for i, level in enumerate(int(c) for c in args.concurrency.split(",")):
            rows.append(
                run_level(
                    stack, target, level, args.count, args.warmup, args.procs, offset=i * 1_000_000
                )
            )
        print(_table(rows))
        if args.json_out:
            with open(args.json_out, "w") as fh:
                json.dump(rows, fh, indent=2)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| c | launches/s | login p50/p95/p99 ms | launch p50/p95/p99 ms | CPU ms/launch "
        "login / launch / postgres / generator | RSS MB login / launch | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, cpu, rss = r["ms"], r["cpu_ms_per_launch"], r["rss_mb"]
        lines.append(
            f"| {r['concurrency']} | {r['launches_per_s']:.0f} | "
            f"{ms['login'][50]:.1f} / {ms['login'][95]:.1f} / {ms['login'][99]:.1f} | "
            f"{ms['launch'][50]:.1f} / {ms['launch'][95]:.1f} / {ms['launch'][99]:.1f} | "
            f"{cpu['login']:.2f} / {cpu['launch']:.2f} / {cpu['postgres']:.2f} / "
            f"{cpu['generator']:.2f} | {rss['login']:.0f} / {rss['launch']:.0f} | "
            f"{sum(r['errors'].values())} {r['errors'] or ''} |"
        )
    total = [
        r["cpu_ms_per_launch"]["login"]
        + r["cpu_ms_per_launch"]["launch"]
        + r["cpu_ms_per_launch"]["postgres"]
        for r in rows
    ]
    lines.append("")
    lines.append(
        "Attune CPU ms per complete launch (login + launch + postgres): "
        + ", ".join(f"c={r['concurrency']}: {t:.2f}" for r, t in zip(rows, total, strict=True))
    )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
