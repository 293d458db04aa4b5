"""``attune dev`` end to end: the real CLI as a subprocess, embedded Postgres and broker."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import free_port
from devstack.supervisor import make_plan, mask_url, read_dev_secrets, write_dev_secrets
from shared.routes import SERVICES
from shared.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A temporary directory the ``postgres`` user can traverse (initdb runs as it as root)."""
    path = Path(tempfile.mkdtemp(prefix="attune-dev-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dev_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update(extra)
    return env


def _dev_argv(port: int, data_dir: Path) -> list[str]:
    # The emulator's own free port: its default (port + 1) may be taken on a busy machine.
    return [sys.executable, "-m", "attune.cli", "dev", "--port", str(port),
            "--emulator-port", str(free_port()), "--data-dir", str(data_dir)]  # fmt: skip


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _jwks_kids(port: int) -> list[str]:
    status, body = _get(port, "/.well-known/jwks.json")
    assert status == 200, body
    return [key["kid"] for key in json.loads(body)["keys"]]


def _proc_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None once it is gone or a zombie."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = line.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid apart)."""
    parents: dict[int, tuple[int, str]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            parents[pid] = stat
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _wait_all_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = set(SERVICES)
    while pending:
        if proc.poll() is not None:
            pytest.fail(f"attune dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready: {sorted(pending)}\n{log.read_text()[-4000:]}")
        for name in sorted(pending):
            try:
                status, _ = _get(port, f"/_services/{name}/readyz")
            except OSError:
                continue
            if status == 200:
                pending.discard(name)
        time.sleep(0.2)
    while "Press Ctrl-C to stop" not in log.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"no banner:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.mark.integration
def test_attune_dev_runs_the_stack_and_stops_cleanly(work_dir: Path) -> None:
    port = free_port()
    data_dir = work_dir / "data"
    log = work_dir / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _dev_argv(port, data_dir), cwd=REPO, env=_dev_env(), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    children: dict[int, str] = {}
    try:
        _wait_all_ready(proc, port, log)
        banner = log.read_text()
        assert f"http://127.0.0.1:{port}/" in banner
        for name in SERVICES:
            assert f"http://127.0.0.1:{port}/_services/{name}/readyz" in banner

        status, body = _get(port, "/definitely/not/routed")
        assert status == 404
        assert json.loads(body)["error"]["code"] == "not_found"
        status, body = _get(port, "/healthz")
        assert status == 200
        kids = _jwks_kids(port)
        assert len(kids) == 1

        secrets_file = data_dir / "dev-secrets.env"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        stored = secrets_file.read_text()
        assert "ATTUNE_KEY_ENCRYPTION_KEYS=dev1:" in stored
        assert "ATTUNE_SECRET_KEYS=" in stored
        assert stored.split("dev1:")[1].split()[0] not in log.read_text()

        children = _descendants(proc.pid)
        service_ports = {
            arg
            for pid in children
            for cmd in [_proc_cmdline(pid).split()]
            if "serve" in cmd and "--port" in cmd
            for arg in [cmd[cmd.index("--port") + 1]]
        }
        assert len(service_ports) == len(SERVICES)
        assert any(str(data_dir) in _proc_cmdline(pid) for pid in children)  # postgres

        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S) == 0, log.read_text()[-4000:]

        survivors = [pid for pid, started in children.items()
                     if (_proc_stat(pid) or (0, ""))[1] == started]  # fmt: skip
        assert not survivors, {pid: _proc_cmdline(pid) for pid in survivors}
        for pid in _all_pids():
            cmdline = _proc_cmdline(pid).split()
            assert not any(str(work_dir) in arg for arg in cmdline), cmdline
            if "serve" in cmdline and "--port" in cmdline:
                assert cmdline[cmdline.index("--port") + 1] not in service_ports, cmdline
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # A restart on the same data directory keeps the secrets, hence the same tool key.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _dev_argv(port, data_dir), cwd=REPO, env=_dev_env(), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _wait_all_ready(proc, port, log)
        assert _jwks_kids(port) == kids
        assert secrets_file.read_text() == stored
        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _service_pid(root: int, name: str) -> int:
    for pid in _descendants(root):
        cmd = _proc_cmdline(pid).split()
        if "serve" in cmd and name in cmd:
            return pid
    raise AssertionError(f"no {name} process under {root}")


def _restarted(root: int, port: int, name: str, killed: int) -> bool:
    """A new process serves ``name`` and the gateway finds it ready."""
    try:
        if _service_pid(root, name) == killed:
            return False
        return _get(port, f"/_services/{name}/readyz")[0] == 200
    except (AssertionError, OSError):
        return False


@pytest.mark.integration
def test_attune_dev_restarts_a_killed_service_and_serves_the_admin_commands(
    work_dir: Path,
) -> None:
    """Regressions: a SIGKILLed service made `attune dev` stop everything (exit 1); the admin
    commands stopped with "DATABASE_URL is missing" against a running `attune dev`;
    `--no-emulator` printed no install code and moved the public URL to 127.0.0.1; the banner
    did not say the embedded Postgres is not durable.

    Now: the supervisor restarts the killed service (logged, with backoff) while the gateway
    holds the requests for it (no 502), `attune admin` finds the stack through its state file,
    and the banner prints an install code, localhost and the durability."""
    port = free_port()
    data_dir = work_dir / "data"
    log = work_dir / "dev.log"
    argv = [sys.executable, "-m", "attune.cli", "dev", "--port", str(port),
            "--no-emulator", "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=_dev_env(), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        _wait_all_ready(proc, port, log)
        banner = log.read_text()
        assert f"http://localhost:{port}/" in banner
        assert "install code for any LMS: attune_ic_" in banner
        assert "NOT DURABLE" in banner
        state_file = data_dir / "dev-state.json"
        assert state_file.stat().st_mode & 0o777 == 0o600

        # The admin commands reach the stack with no URL copied anywhere.
        admin_env = _dev_env(ATTUNE_DEV_DATA_DIR=str(data_dir))
        result = subprocess.run(
            [sys.executable, "-m", "attune.cli", "admin", "create-install-code", "--label", "x"],
            cwd=work_dir, env=admin_env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("attune_ic_")
        assert "using the running `attune dev`" in result.stderr
        result = subprocess.run(
            [sys.executable, "-m", "attune.cli", "admin", "create-token", "dev-test"],
            cwd=work_dir, env=admin_env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/admin/me", headers={"Authorization": f"Bearer {token}"})
        me = conn.getresponse()
        assert me.status == 200 and json.loads(me.read())["name"] == "dev-test"
        conn.close()

        kids = _jwks_kids(port)
        kills: list[int] = []
        for name in ("jwks", "launch"):
            killed = _service_pid(proc.pid, name)
            os.kill(killed, signal.SIGKILL)
            # Asked at once, while the service is down: the gateway holds the request until
            # the restarted service is ready (never a 502).
            if name == "jwks":
                assert _jwks_kids(port) == kids
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _restarted(proc.pid, port, name, killed) or (
                log.read_text().count("service_restarted") < len(kills) + 1
            ):
                assert proc.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.2)
            kills.append(killed)
        text = log.read_text()
        assert text.count("service_exited") == 2 and "restart_in_s=1.0" in text

        proc.send_signal(signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S) == 0, log.read_text()[-4000:]
        assert not state_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_configuration_exits_2_before_starting_anything(work_dir: Path) -> None:
    data_dir = work_dir / "data"
    result = subprocess.run(
        _dev_argv(free_port(), data_dir), cwd=REPO, env=_dev_env(DATABASE_URL="mysql://x"),
        capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("attune: invalid configuration: ")
    assert "DATABASE_URL" in lines[0]
    assert "Traceback" not in stderr
    assert not data_dir.exists()


def test_taken_gateway_port_exits_2(work_dir: Path) -> None:
    data_dir = work_dir / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _dev_argv(port, data_dir), cwd=REPO, env=_dev_env(), capture_output=True,
            timeout=60, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"attune: port {port} is in use; pass --port"
    assert not data_dir.exists()


def test_make_plan_embeds_what_is_not_configured(tmp_path: Path) -> None:
    plan = make_plan({"ATTUNE_KAFKA_SESSION_TIMEOUT_MS": "2000"}, tmp_path)
    assert plan.embed_postgres and plan.embed_broker and plan.create_topics
    assert plan.env["ATTUNE_ENV"] == "development"
    assert plan.env["ATTUNE_HOST"] == "127.0.0.1"
    assert plan.env["KAFKA_ENABLE_IDEMPOTENCE"] == "false"
    assert plan.env["ATTUNE_KAFKA_SESSION_TIMEOUT_MS"] == "2000"

    external = make_plan(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/attune",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "ATTUNE_ENV": "test",
        },
        tmp_path,
    )
    assert not external.embed_postgres and not external.embed_broker
    assert not external.create_topics
    assert external.env["ATTUNE_ENV"] == "test"
    assert "KAFKA_ENABLE_IDEMPOTENCE" not in external.env


def test_make_plan_supplies_development_secrets(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    plan = make_plan({}, data_dir, gateway_port=8123)
    assert plan.env["ATTUNE_KEY_ENCRYPTION_KEYS"].startswith("dev1:")
    assert len(base64.b64decode(plan.env["ATTUNE_KEY_ENCRYPTION_KEYS"][5:])) == 32
    assert len(base64.urlsafe_b64decode(plan.env["ATTUNE_SECRET_KEYS"])) == 32
    # One rule, emulator or not: the README's http://localhost:PORT.
    assert plan.env["ATTUNE_PUBLIC_URL"] == "http://localhost:8123"
    assert plan.env["ATTUNE_ALLOW_INSECURE_URLS"] == "true"
    assert set(plan.dev_secrets) == {"ATTUNE_KEY_ENCRYPTION_KEYS", "ATTUNE_SECRET_KEYS"}
    assert not data_dir.exists()  # planning writes nothing

    # Once stored, the same values come back; what the environment sets wins and is not stored.
    write_dev_secrets(plan.dev_secrets_path, plan.dev_secrets)
    again = make_plan({"ATTUNE_SECRET_KEYS": "from-env"}, data_dir)
    assert again.env["ATTUNE_KEY_ENCRYPTION_KEYS"] == plan.env["ATTUNE_KEY_ENCRYPTION_KEYS"]
    assert again.env["ATTUNE_SECRET_KEYS"] == "from-env"
    assert set(again.dev_secrets) == {"ATTUNE_KEY_ENCRYPTION_KEYS"}
    assert read_dev_secrets(plan.dev_secrets_path) == plan.dev_secrets
    assert plan.dev_secrets_path.stat().st_mode & 0o777 == 0o600

    production = make_plan({"ATTUNE_ENV": "production"}, tmp_path / "other")
    assert "ATTUNE_ALLOW_INSECURE_URLS" not in production.env
    with pytest.raises(SettingsError, match="ATTUNE_KEY_ENCRYPTION_KEYS is invalid"):
        make_plan({"ATTUNE_KEY_ENCRYPTION_KEYS": "k1:short"}, tmp_path)


def test_make_plan_rejects_bad_settings_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ATTUNE_LOG_LEVEL"):
        make_plan({"ATTUNE_LOG_LEVEL": "LOUD"}, tmp_path)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql://postgres@127.0.0.1:5/postgres",
            "postgresql://postgres@127.0.0.1:5/postgres",
        ),
        ("postgresql://u:s3cr%40t@db:5432/a", "postgresql://u:***@db:5432/a"),
        (
            "postgresql://db/a?user=u&password=hunter2&x=1",
            "postgresql://db/a?user=u&password=***&x=1",
        ),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
