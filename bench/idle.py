"""Idle footprint of every service: RSS and CPU over a quiet window.

Starts embedded Postgres and broker, migrates, runs all five services as their own processes
(each with its pool, consumers and relay running), waits until they are ready, lets them settle,
then measures each process's RSS and CPU over ``--seconds``.

    .venv/bin/python -m bench.idle
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.harness import (
    FAST_POSTGRES_HELP,
    cpu_seconds,
    infrastructure,
    rss_mb,
    start_service,
    wait_ready,
)

SERVICES = ("login", "launch", "registration", "jwks", "checkins")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fast-postgres", action="store_true", help=FAST_POSTGRES_HELP)
    args = parser.parse_args()
    base = "http://127.0.0.1:8000"
    region = {
        "ATTUNE_PUBLIC_URL": base,
        "ATTUNE_REGIONS": f"bench={base}",
        "ATTUNE_REGION": "bench",
    }
    with infrastructure(None, None, fast_postgres=args.fast_postgres) as stack:
        for name in SERVICES:
            start_service(stack, name, region)
        asyncio.run(wait_ready(stack))
        time.sleep(3)
        before = {name: cpu_seconds(stack.pid(name)) for name in SERVICES}
        time.sleep(args.seconds)
        lines = [stack.durability, "", "| service | idle RSS MB | idle CPU (% of a core) |"]
        lines.append("|---|---|---|")
        for name in SERVICES:
            cpu = (cpu_seconds(stack.pid(name)) - before[name]) / args.seconds * 100
            lines.append(f"| {name} | {rss_mb(stack.pid(name)):.0f} | {cpu:.1f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
