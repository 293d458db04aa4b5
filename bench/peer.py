"""The pylti1p3 peer for ``bench/launch.py --peer pylti1p3``: its virtualenv and its server.

The peer is pylti1p3 2.0 on Flask under gunicorn (``bench/peers/pylti1p3_app.py``), configured
like the team's peer study (``gthread``, 2 workers, 8 threads; JWKS cached per worker; state
and nonce in Flask's signed-cookie session). Its packages live in their own virtualenv
(``.bench/pylti1p3``, created on first use with pinned versions from the package index; a
benchmark-time download, never a run-time one) so Attune's environment never sees them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.harness import ROOT, child_preexec

VENV = ROOT / ".bench" / "pylti1p3"
PACKAGES = ("pylti1p3==2.0.0", "Flask==3.1.3", "Flask-Caching==2.5.1", "gunicorn==27.0.1")
WORKER_ARGS = ("-w", "2", "-k", "gthread", "--threads", "8")


def ensure_venv() -> Path:
    """The peer's virtualenv, created and filled once (a stamp records the package list)."""
    stamp = VENV / ".packages"
    wanted = "\n".join(PACKAGES)
    if stamp.is_file() and stamp.read_text() == wanted:
        return VENV
    print(f"peer: creating {VENV} ({', '.join(PACKAGES)})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PACKAGES],
        check=True,
    )
    stamp.write_text(wanted)
    return VENV


def start(
    *,
    port: int,
    issuer: str,
    client_id: str,
    deployment_id: str,
    jwks_url: str,
    cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """gunicorn serving the peer on 127.0.0.1:``port``; returns once it answers /health."""
    venv = ensure_venv()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LTI_ISS": issuer,
        "LTI_CLIENT_ID": client_id,
        "LTI_DEPLOYMENT_ID": deployment_id,
        "LTI_KEY_SET_URL": jwks_url,
        "LTI_AUTH_URL": f"http://127.0.0.1:{port}/auth",  # only written into the login 302
        "TOOL_BASE_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "gunicorn"),
            *WORKER_ARGS,
            *("-b", f"127.0.0.1:{port}", "--log-level", "warning", "pylti1p3_app:app"),
        ],
        cwd=ROOT / "bench" / "peers",
        env=env,
        preexec_fn=child_preexec(cpus),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit("peer: gunicorn did not start")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
