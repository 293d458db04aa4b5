#!/usr/bin/env python3
"""Benchmark ``GET /.well-known/jwks.json`` of the real jwks service.

Starts an embedded Postgres and the embedded Kafka-protocol broker (``devstack.embedded``),
migrates, runs ``attune serve jwks`` as its own process on loopback, waits until it is ready,
then drives the JWKS URL from a separate load process: ``--clients`` concurrent keep-alive
clients (one aiohttp session) for ``--seconds`` after ``--warmup`` seconds. It prints
requests/s, p50/p95/p99 latency, and the service process's CPU-ms per request, from
``/proc/<pid>/stat`` utime+stime deltas over the measured window only.

    .venv/bin/python bench/jwks.py                      # 32 clients, 10 s
    .venv/bin/python bench/jwks.py --clients 1 --seconds 5 --json-out result.json

Everything listens on 127.0.0.1 and is stopped (by pid) on exit; the run is bounded by
warm-up + duration + start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")
JWKS_PATH = "/.well-known/jwks.json"
TARGET_CPU_MS = 0.15


# --- the load process ----------------------------------------------------------------------


async def _load(url: str, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=5)
    latencies: list[float] = []
    errors = 0
    measuring = False
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(stop_at: float) -> None:
            nonlocal errors
            while loop.time() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if measuring:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        warm_end = loop.time() + warmup
        await asyncio.gather(*(worker(warm_end) for _ in range(clients)))
        measuring = True
        print("START", flush=True)  # the parent samples the service's CPU now
        started = loop.time()
        await asyncio.gather(*(worker(started + seconds) for _ in range(clients)))
        elapsed = loop.time() - started
        print("STOP", flush=True)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def client_main(args: argparse.Namespace) -> int:
    result = asyncio.run(_load(args.client, args.clients, args.warmup, args.seconds))
    print(json.dumps(result), flush=True)
    return 0


# --- the orchestrating process -------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"jwks service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("jwks service not ready in time")


def bench_main(args: argparse.Namespace) -> int:
    from bench.harness import durability
    from devstack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
    from shared.migrate import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="attune-bench-"))
    tmp.chmod(0o755)  # initdb runs as the postgres user when we are root
    service: subprocess.Popen[bytes] | None = None
    try:
        pg_cluster = EmbeddedPostgres(tmp / "pg", fast=args.fast_postgres)
        with pg_cluster as pg, EmbeddedBroker() as broker:
            upgrade(pg.url)
            stored = durability(pg.url)
            port = free_port()
            env = {
                **os.environ,
                "ATTUNE_ENV": "test",
                "DATABASE_URL": pg.url,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "KAFKA_ENABLE_IDEMPOTENCE": "false",
                "ATTUNE_KAFKA_CREATE_TOPICS": "true",
                "ATTUNE_LOG_FORMAT": "json",
                "ATTUNE_LOG_LEVEL": args.log_level,
                "ATTUNE_KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
            }
            log_path = tmp / "jwks.log"
            with log_path.open("wb") as log_file:
                service = subprocess.Popen(
                    [sys.executable, "-m", "attune.cli", "serve", "jwks", "--port", str(port)],
                    cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            wait_ready(port, service)
            url = f"http://127.0.0.1:{port}{JWKS_PATH}"
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read()
            client_argv = [
                sys.executable, __file__, "--client", url, "--clients", str(args.clients),
                "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            ]  # fmt: skip
            client = subprocess.Popen(
                client_argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
            assert client.stdout is not None
            ticks_start = ticks_end = 0
            result: dict[str, Any] = {}
            for line in client.stdout:
                line = line.strip()
                if line == "START":
                    ticks_start = cpu_ticks(service.pid)
                elif line == "STOP":
                    ticks_end = cpu_ticks(service.pid)
                elif line.startswith("{"):
                    result = json.loads(line)
            client.wait(timeout=args.seconds + args.warmup + 30)
            if not result:
                raise SystemExit("the load process reported nothing")
            cpu_ms = (ticks_end - ticks_start) * 1000 / CLK_TCK
            result.update(
                clients=args.clients,
                log_level=args.log_level,
                jwks_bytes=len(body),
                service_cpu_ms=cpu_ms,
                service_cpu_ms_per_request=cpu_ms / max(1, result["requests"]),
                service_cores=cpu_ms / 1000 / result["seconds"],
                cpus=os.cpu_count(),
            )
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(20)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{stored}\n"
        f"jwks GET {result['jwks_bytes']} B, {args.clients} keep-alive clients, "
        f"{result['seconds']:.1f} s (log level {args.log_level})\n"
        f"  requests/s      {result['rps']:.0f}  ({result['requests']} ok, "
        f"{result['errors']} errors)\n"
        f"  latency ms      p50 {result['p50_ms']:.2f}  p95 {result['p95_ms']:.2f}  "
        f"p99 {result['p99_ms']:.2f}\n"
        f"  service CPU     {result['service_cpu_ms_per_request']:.3f} ms/request "
        f"({result['service_cores']:.2f} cores; target <= {TARGET_CPU_MS})"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--log-level", default="INFO", help="service ATTUNE_LOG_LEVEL (INFO)")
    parser.add_argument("--json-out", help="also write the figures as JSON here")
    from bench.harness import FAST_POSTGRES_HELP

    parser.add_argument("--fast-postgres", action="store_true", help=FAST_POSTGRES_HELP)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the load process
    args = parser.parse_args()
    if not 1 <= args.clients <= 1024 or not 0 < args.seconds <= 300:
        parser.error("--clients must be 1..1024 and --seconds 0..300")
    return client_main(args) if args.client else bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
