"""``attune dev``: the whole stack on one machine, behind one local gateway.

``run_dev`` guarantees, in order:

1. Configuration is validated exactly as the services will read it, before anything starts; a
   bad value prints ``attune: invalid configuration: ...`` and exits 2. A taken gateway port
   prints ``attune: port N is in use; pass --port`` and exits 2. The gateway socket is bound
   here and kept, so the port cannot be lost to a race during start-up.
2. Postgres and the Kafka-protocol broker come from ``DATABASE_URL`` and
   ``KAFKA_BOOTSTRAP_SERVERS`` when set; otherwise embedded ones start (Postgres persists in
   ``<data-dir>/postgres``, the broker keeps everything in memory).
3. Migrations run; topics are created when the broker is embedded or
   ``ATTUNE_KAFKA_CREATE_TOPICS`` is true.
4. Each service runs as its own OS process (``attune serve <name>``) on a free port, in its own
   session with a parent-death signal, so none outlives the supervisor, even a SIGKILLed one.
5. The gateway (``shared.dev.gateway``) serves 127.0.0.1:<port> from this process. Once every
   service's ``/readyz`` answers 200 through it (60 s at most, else exit 1 naming the laggards)
   a banner lists the URLs.
6. SIGINT/SIGTERM stop, in order: gateway, services (SIGTERM, SIGKILL after 15 s), embedded
   broker, embedded Postgres; exit 0. A service that exits by itself stops everything the same
   way with exit 1; nothing is restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from shared.dev.embedded import (
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    free_port,
    pdeathsig_preexec,
)
from shared.dev.gateway import create_gateway
from shared.events import topics
from shared.kafka import ensure_topics
from shared.logs import configure_logging, get_logger
from shared.migrate import upgrade
from shared.routes import SERVICES
from shared.settings import SettingsError, load_settings

log = get_logger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2

HOST: Final = "127.0.0.1"
READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
READY_POLL_S: Final = 0.25
# Only for validating the rest of the configuration before the embedded servers exist.
_PLACEHOLDER_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
_PLACEHOLDER_BOOTSTRAP: Final = "127.0.0.1:9092"
_PR_SET_PDEATHSIG: Final = 1


@dataclass
class DevPlan:
    """What to start: derived from the environment before anything runs."""

    env: dict[str, str]
    data_dir: Path
    embed_postgres: bool
    embed_broker: bool
    create_topics: bool


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: asyncio.subprocess.Process
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _is_set(environ: Mapping[str, str], name: str) -> bool:
    # The same rule as load_settings: empty or blank counts as unset.
    return bool(environ.get(name, "").strip())


def make_plan(environ: Mapping[str, str], data_dir: Path) -> DevPlan:
    """Resolve what to embed and the services' environment; raises ``SettingsError``.

    The services' settings are validated here, with placeholders for the two URLs the
    embedded servers will provide, so a bad value fails before any process starts.
    """
    env = dict(environ)
    embed_postgres = not _is_set(env, "DATABASE_URL")
    embed_broker = not _is_set(env, "KAFKA_BOOTSTRAP_SERVERS")
    if not _is_set(env, "ATTUNE_ENV"):
        env["ATTUNE_ENV"] = "development"
    env["ATTUNE_HOST"] = HOST
    if embed_broker:
        # Forced, not defaulted: the embedded broker refuses idempotent producers and starts
        # without topics, so any other value cannot work against it.
        env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"
        env["ATTUNE_KAFKA_CREATE_TOPICS"] = "true"
        # Group joins on the embedded broker take about half the session timeout (INFRA.md).
        if not _is_set(env, "ATTUNE_KAFKA_SESSION_TIMEOUT_MS"):
            env["ATTUNE_KAFKA_SESSION_TIMEOUT_MS"] = "3000"
    probe = dict(env)
    if embed_postgres:
        probe["DATABASE_URL"] = _PLACEHOLDER_DATABASE_URL
    if embed_broker:
        probe["KAFKA_BOOTSTRAP_SERVERS"] = _PLACEHOLDER_BOOTSTRAP
    # The port override mirrors `attune serve --port`, which replaces ATTUNE_PORT.
    settings = load_settings(probe, port=8080)
    return DevPlan(
        env=env,
        data_dir=data_dir,
        embed_postgres=embed_postgres,
        embed_broker=embed_broker,
        create_topics=embed_broker or settings.kafka_create_topics,
    )


def mask_url(url: str) -> str:
    """``url`` with any password (user-info or ``password=`` query parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def bind_gateway_socket(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port``, reserved for the gateway; raises OSError."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets a restart reuse a port whose old connections linger in TIME_WAIT; on Linux it
        # does not allow two listeners on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    """Owns every process ``attune dev`` starts and stops them in reverse dependency order."""

    def __init__(self, plan: DevPlan, gateway_sock: socket.socket) -> None:
        self._plan = plan
        self._env = dict(plan.env)
        self._sock = gateway_sock
        self._gateway_port: int = gateway_sock.getsockname()[1]
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        self._stopping = False
        self._failed = False
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None
        self._services: list[ServiceProcess] = []
        self._runner: web.AppRunner | None = None
        self._last_readyz: dict[str, str] = {}

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self._gateway_port}"

    async def run(self) -> int:
        """Start everything, serve until a signal or a service failure, stop everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        code = EXIT_FAILED  # unless _run returns: an exception escaping it is a failure
        try:
            code = await self._run()
        finally:
            await self._shutdown()
            log.info("stopped", exit_code=code)
        return code

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.info("already_stopping", signal=sig.name)
        else:
            log.info("stop_requested", signal=sig.name)
        self._stop.set()

    async def _stop_requested(self) -> bool:
        # Signals are delivered through the loop, so let it run once: a Ctrl-C that arrived
        # during a blocking start-up step is seen here.
        await asyncio.sleep(0.01)
        return self._stop.is_set()

    async def _run(self) -> int:
        try:
            self._start_infrastructure()
        except EmbeddedError as exc:
            print(f"attune: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if await self._stop_requested():
            return EXIT_OK
        if not await self._prepare_infrastructure():
            return EXIT_FAILED
        if await self._stop_requested():
            return EXIT_OK
        await self._start_services()
        await self._start_gateway()
        outcome = await self._wait_until_ready()
        if outcome is not None:
            return outcome
        self._print_banner()
        await self._stop.wait()
        return EXIT_FAILED if self._failed else EXIT_OK

    def _start_infrastructure(self) -> None:
        """Start the embedded servers the plan needs.

        Deliberately blocking, on the loop's thread: the embedded servers' parent-death
        signal is tied to the thread that starts them, and this one lives until the end.
        """
        data_dir = self._plan.data_dir
        if self._plan.embed_postgres:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._postgres = EmbeddedPostgres(data_dir / "postgres")
            log.info("embedded_postgres_starting", data_dir=str(self._postgres.data_dir))
            self._postgres.start()
            self._env["DATABASE_URL"] = self._postgres.url
        if self._plan.embed_broker:
            self._broker = EmbeddedBroker(log_path=data_dir / "broker.log")
            self._broker.start()
            self._env["KAFKA_BOOTSTRAP_SERVERS"] = self._broker.bootstrap_servers

    async def _prepare_infrastructure(self) -> bool:
        """Migrate the database and create topics; False (after logging why) on failure."""
        settings = load_settings(self._env)
        started = time.monotonic()
        try:
            # Alembic is synchronous and runs its own event loop: keep it off this one.
            await asyncio.to_thread(upgrade, settings.database_url.get_secret_value())
        except Exception as exc:  # any failure here ends start-up; the log says which
            log.error("migrations_failed", error=repr(exc), exc_info=True)
            print(f"attune: migrations failed: {exc}", file=sys.stderr)
            return False
        log.info("migrated", seconds=round(time.monotonic() - started, 2))
        if self._plan.create_topics:
            try:
                await ensure_topics(settings, topics.ALL)
            except Exception as exc:  # as above: report and stop
                log.error("topic_creation_failed", error=repr(exc), exc_info=True)
                print(f"attune: creating Kafka topics failed: {exc}", file=sys.stderr)
                return False
        return True

    async def _start_services(self) -> None:
        preexec = pdeathsig_preexec(signal.SIGTERM)
        for name in SERVICES:
            port = free_port()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared.cli", "serve", name, "--port", str(port),
                env=self._env,
                stdin=subprocess.DEVNULL,
                # Own session: a terminal Ctrl-C reaches the supervisor only, which then
                # stops the services in order instead of all at once.
                start_new_session=True,
                preexec_fn=preexec,
            )  # fmt: skip
            service = ServiceProcess(name=name, port=port, process=process)
            service.watcher = asyncio.create_task(self._watch(service), name=f"watch-{name}")
            self._services.append(service)
            log.info("service_started", service=name, pid=process.pid, port=port)

    async def _watch(self, service: ServiceProcess) -> None:
        returncode = await service.process.wait()
        if not self._stopping:
            log.error("service_exited", service=service.name, returncode=returncode)
            self._failed = True
            self._stop.set()

    async def _start_gateway(self) -> None:
        upstreams = {s.name: s.url for s in self._services}
        self._runner = web.AppRunner(
            create_gateway(upstreams), handle_signals=False, access_log=None, shutdown_timeout=5
        )
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        log.info("gateway_started", url=self.gateway_url)

    async def _wait_until_ready(self) -> int | None:
        """None once every service is ready; otherwise the exit code to stop with."""
        ready = asyncio.create_task(self._poll_readiness())
        stopped = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, stopped}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (ready, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if ready in done:
            return None
        if stopped in done:
            return EXIT_FAILED if self._failed else EXIT_OK
        print(
            f"attune: not every service became ready within {READY_TIMEOUT_S:.0f} s:",
            file=sys.stderr,
        )
        for name in SERVICES:
            if name in self._last_readyz:
                print(f"  {name}: {self._last_readyz[name]}", file=sys.stderr)
        return EXIT_FAILED

    async def _poll_readiness(self) -> None:
        """Return once every service's ``/readyz`` answered 200 through the gateway."""
        ports = {s.name: s.port for s in self._services}
        pending = set(ports)
        self._last_readyz = {name: "not listening yet" for name in ports}
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while pending:
                for name in sorted(pending):
                    # Ask through the gateway only once the service listens, so the gateway
                    # does not log a refused connection for every poll of a booting service.
                    if not await _accepts_connections(ports[name]):
                        continue
                    url = f"{self.gateway_url}/_services/{name}/readyz"
                    try:
                        async with session.get(url) as resp:
                            body = await resp.text()
                            self._last_readyz[name] = f"{resp.status} {body.strip()}"
                            if resp.status == 200:
                                pending.discard(name)
                                del self._last_readyz[name]
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self._last_readyz[name] = repr(exc)
                if pending:
                    await asyncio.sleep(READY_POLL_S)

    def _print_banner(self) -> None:
        elapsed = time.monotonic() - self._started
        width = max(len(n) for n in (*SERVICES, "postgres", "kafka", "gateway"))
        pg_note = f" (embedded, data in {self._postgres.data_dir})" if self._postgres else ""
        kafka_note = " (embedded, in memory)" if self._broker else ""
        lines = [
            "",
            f"Attune is ready in {elapsed:.1f} s ({self._env['ATTUNE_ENV']})",
            f"  {'gateway':<{width}}  {self.gateway_url}/",
            *(
                f"  {name:<{width}}  {self.gateway_url}/_services/{name}/readyz"
                for name in SERVICES
            ),
            f"  {'postgres':<{width}}  {mask_url(self._env['DATABASE_URL'])}{pg_note}",
            f"  {'kafka':<{width}}  {self._env['KAFKA_BOOTSTRAP_SERVERS']}{kafka_note}",
            "Press Ctrl-C to stop",
            "",
        ]
        print("\n".join(lines), flush=True)

    async def _shutdown(self) -> None:
        """Stop whatever was started: gateway, services, broker, Postgres. Idempotent."""
        self._stopping = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        await self._stop_services()
        # Blocking on purpose: see _start_infrastructure; the loop has nothing else to do.
        if self._broker is not None:
            broker, self._broker = self._broker, None
            broker.stop()
        if self._postgres is not None:
            postgres, self._postgres = self._postgres, None
            postgres.stop()

    async def _stop_services(self) -> None:
        """SIGTERM every running service (they drain), SIGKILL what is left after 15 s."""
        running = [s for s in self._services if s.process.returncode is None]
        for service in running:
            _signal_group(service.process, signal.SIGTERM)
        waits = [asyncio.create_task(s.process.wait()) for s in running]
        if waits:
            _, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT_S)
            if late:
                for service in running:
                    if service.process.returncode is None:
                        log.warning("service_killed_after_timeout", service=service.name)
                        _signal_group(service.process, signal.SIGKILL)
                await asyncio.wait(waits)
            log.info(
                "services_stopped",
                returncodes={s.name: s.process.returncode for s in running},
            )
        for service in self._services:
            if service.watcher is not None:
                service.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await service.watcher
        self._services.clear()


async def _accepts_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # The service leads its own process group (start_new_session), so this reaches anything
    # it spawned too. Only while it is unreaped: until then the group id cannot be reused.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def run_dev(args: argparse.Namespace) -> int:
    """``attune dev``: run the stack until Ctrl-C; returns the process exit status."""
    configure_logging(service="dev", level="INFO", fmt="console")
    try:
        plan = make_plan(os.environ, Path(args.data_dir))
    except SettingsError as exc:
        print(f"attune: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        sock = bind_gateway_socket(args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"attune: port {args.port} is in use; pass --port", file=sys.stderr)
        else:
            print(f"attune: cannot listen on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    with sock:
        return asyncio.run(Supervisor(plan, sock).run())
