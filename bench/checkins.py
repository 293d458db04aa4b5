"""Students answering a check-in: ``PUT /api/checkins/{id}/response`` against the real service.

Starts embedded Postgres and broker (or uses --database-url/--kafka), migrates, registers a
platform and deployment, runs the checkins service as its own process, creates an open
check-in as a teacher through the API, and has ``--students`` distinct students answer it
from client processes (every request carries that student's own launch token, minted as the
launch service signs it). The first answer of a student is a 201, a changed answer a 200;
anything else is an error. The service does the full work: token check, the check-in read,
the upsert of the answer, the ``checkin.answered`` outbox event, the student's own answer read
back, all in one transaction; its relay publishes the events during the run.
Prints answers/s, p50/p95/p99, CPU-ms per answer of the service, Postgres and the generator.

    .venv/bin/python -m bench.checkins --concurrency 16 --count 4000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
import uuid
from typing import Any

import aiohttp

from bench.harness import (
    add_postgres_options,
    execute,
    infrastructure,
    measure,
    percentile,
    start_service,
    tree_rss_mb,
    wait_ready,
)
from shared.lti.launch_token import LaunchTokens
from shared.signing import parse_secrets

ISSUER = "https://platform.bench.example"
CLIENT_ID = "bench-client"
DEPLOYMENT = "bench-deployment"
CONTEXT = "course-bench"
EMOTIONS = ("calm", "happy", "tired", "worried", "excited", "bored")


def _tokens(secret: str, platform_id: int, students: int, offset: int) -> list[str]:
    tokens = LaunchTokens(parse_secrets_str(secret), ttl_s=3600)
    return [
        tokens.issue(
            launch_id=str(uuid.uuid4()),
            platform_id=platform_id,
            deployment_id=DEPLOYMENT,
            subject=f"student-{offset + i}",
            context_id=CONTEXT,
            resource_link_id="rl-1",
            roles=("learner",),
            message_type="LtiResourceLinkRequest",
            region="bench",
        )
        for i in range(students)
    ]


def parse_secrets_str(secret: str) -> list[bytes]:
    from pydantic import SecretStr

    return parse_secrets(SecretStr(secret))


async def _client(
    url: str, tokens: list[str], count: int, concurrency: int, seed: int
) -> dict[str, Any]:
    timings: list[float] = []
    errors: dict[str, int] = {}
    remaining = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(n: int) -> None:
            token = tokens[n % len(tokens)]
            body = json.dumps({"emotion": EMOTIONS[(n + seed) % len(EMOTIONS)]})
            t0 = time.perf_counter()
            async with session.put(
                url,
                data=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            ) as resp:
                await resp.read()
                status = resp.status
            if status not in (200, 201):
                errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                return
            timings.append(time.perf_counter() - t0)

        async def worker() -> None:
            for n in remaining:
                await one(n)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"timings": timings, "errors": errors}


def _client_process(
    url: str, tokens: list[str], count: int, concurrency: int, seed: int, barrier: Any, out: Any
) -> None:
    barrier.wait()
    out.put(asyncio.run(_client(url, tokens, count, concurrency, seed)))


def run_level(
    url: str,
    tokens: list[str],
    groups: dict[str, int],
    concurrency: int,
    count: int,
    procs: int,
    seed: int,
) -> dict[str, Any]:
    procs = max(1, min(procs, concurrency))
    share = len(tokens) // procs
    run = measure(
        _client_process,
        [
            (
                url,
                tokens[i * share : (i + 1) * share],  # each student in one process only
                count // procs,
                max(1, concurrency // procs),
                seed + i,
            )
            for i in range(procs)
        ],
        groups,
    )
    timings = [t for r in run.results for t in r["timings"]]
    errors: dict[str, int] = {}
    for r in run.results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    per = max(len(timings), 1)
    return {
        "concurrency": concurrency,
        "answers": len(timings),
        "errors": errors,
        "answers_per_s": len(timings) / run.seconds,
        "ms": {q: percentile(timings, q) * 1000 for q in (50, 95, 99)},
        "cpu_ms_per_answer": {
            **{name: cpu * 1000 / per for name, cpu in run.cpu.items()},
            "generator": run.generator_cpu * 1000 / per,
        },
        "rss_mb": tree_rss_mb(groups["checkins"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="16", help="comma-separated levels")
    parser.add_argument("--count", type=int, default=4000, help="measured answers per level")
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    add_postgres_options(parser)
    parser.add_argument("--kafka")
    parser.add_argument("--json-out")
    args = parser.parse_args()

    secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
    rows = []
    with infrastructure(args.database_url, args.kafka, fast_postgres=args.fast_postgres) as stack:
        stack.env["ATTUNE_SECRET_KEYS"] = secret
        platform_id = asyncio.run(
            execute(
                stack.database_url,
                "WITH p AS (INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, product) "
                "VALUES ($1, $2, 'https://platform.bench.example/auth', "
                "'https://platform.bench.example/jwks', 'generic') RETURNING id), "
                "d AS (INSERT INTO deployments (platform_id, deployment_id) "
                "SELECT id, $3 FROM p) SELECT id FROM p",
                ISSUER,
                CLIENT_ID,
                DEPLOYMENT,
            )
        )
        assert isinstance(platform_id, int)
        base_url = "http://127.0.0.1:8000"  # the region URL written into the app's links
        start_service(
            stack,
            "checkins",
            {
                "ATTUNE_PUBLIC_URL": base_url,
                "ATTUNE_REGIONS": f"bench={base_url}",
                "ATTUNE_REGION": "bench",
            },
        )
        asyncio.run(wait_ready(stack))
        base = f"{stack.url('checkins')}/api/checkins"
        teacher = LaunchTokens(parse_secrets_str(secret), ttl_s=3600).issue(
            launch_id=str(uuid.uuid4()),
            platform_id=platform_id,
            deployment_id=DEPLOYMENT,
            subject="teacher-1",
            context_id=CONTEXT,
            resource_link_id="rl-1",
            roles=("instructor",),
            message_type="LtiResourceLinkRequest",
            region="bench",
        )
        checkin_id = asyncio.run(_create_checkin(base, teacher))
        tokens = _tokens(secret, platform_id, args.students, 0)
        url = f"{base}/checkins/{checkin_id}/response"
        groups = {"checkins": stack.pid("checkins")}
        if stack.postgres_pid:
            groups["postgres"] = stack.postgres_pid
        if stack.broker_pid:
            groups["broker"] = stack.broker_pid
        # Warm-up: every student answers once (201s), so the measured answers are a mix of
        # changed answers (200) — the steady state of a class re-answering — measured below.
        asyncio.run(_client(url, tokens, len(tokens), 16, 0))
        for i, level in enumerate(int(c) for c in args.concurrency.split(",")):
            rows.append(run_level(url, tokens, groups, level, args.count, args.procs, 1 + i))
    print(table(rows, durability=stack.durability))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(
                {"args": vars(args), "durability": stack.durability, "rows": rows}, fh, indent=2
            )


async def _create_checkin(base: str, teacher: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/checkins",
            json={"question": "How are you feeling about the exam?"},
            headers={"Authorization": f"Bearer {teacher}", "Accept": "application/json"},
        ) as resp,
    ):
        body = await resp.json()
        if resp.status != 201:
            raise SystemExit(f"creating the check-in failed: {resp.status} {body}")
        return int(body["id"])


ATTUNE = ("checkins", "postgres")


def table(rows: list[dict[str, Any]], *, durability: str = "") -> str:
    lines = [
        durability,
        "",
        "| c | answers/s | p50/p95/p99 ms | Attune CPU ms/answer (checkins + postgres) "
        "| CPU ms/answer by process | checkins RSS MB | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu_ms_per_answer"]
        total = sum(cpu.get(name, 0.0) for name in ATTUNE)
        split = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        errors = sum(r["errors"].values())
        lines.append(
            f"| {r['concurrency']} | {r['answers_per_s']:.0f} "
            f"| {r['ms'][50]:.1f} / {r['ms'][95]:.1f} / {r['ms'][99]:.1f} | **{total:.2f}** "
            f"| {split} | {r['rss_mb']:.0f} | {errors}{' ' + str(r['errors']) if errors else ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
