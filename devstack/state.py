"""The running ``attune dev`` stack, as the operator commands find it.

While it runs, ``attune dev`` keeps ``<data-dir>/dev-state.json`` (mode 0600: it holds the
development secrets and the database URL): its process id and the settings the other
``attune`` commands need to reach the same stack (``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``,
the development keys). It removes the file when it stops. ``attune admin``, ``attune keys``,
``attune events`` and the erase commands read it when ``DATABASE_URL`` is not set, from the
data directory ``ATTUNE_DEV_DATA_DIR`` names (default ``.attune/dev``, as ``attune dev``'s), so
``attune admin create-install-code`` works against the stack without copying any URL. A file
whose process is gone (``attune dev`` was killed) is ignored, with a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devstack.embedded import pid_alive

STATE_FILE: Final = "dev-state.json"
DEFAULT_DATA_DIR: Final = ".attune/dev"
DATA_DIR_ENV: Final = "ATTUNE_DEV_DATA_DIR"
# What another `attune` command needs to act on the same stack as `attune dev`'s services.
STATE_VARS: Final = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_ENABLE_IDEMPOTENCE",
    "ATTUNE_ENV",
    "ATTUNE_PUBLIC_URL",
    "ATTUNE_ALLOW_INSECURE_URLS",
    "ATTUNE_KEY_ENCRYPTION_KEYS",
    "ATTUNE_SECRET_KEYS",
)


@dataclass(frozen=True)
class DevState:
    path: Path
    pid: int
    env: dict[str, str]


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def write_state(data_dir: Path, pid: int, env: Mapping[str, str]) -> Path:
    """Record the running stack (atomically, owner-only); returns the file's path."""
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        json.dump({"pid": pid, "env": {k: env[k] for k in STATE_VARS if k in env}}, out)
    os.replace(tmp, path)
    return path


def remove_state(data_dir: Path, pid: int) -> None:
    """Remove the record if it is this process's (another stack may have replaced it)."""
    path = state_path(data_dir)
    state = _read(path)
    if state is not None and state.pid == pid:
        path.unlink(missing_ok=True)


def _read(path: Path) -> DevState | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid, env = raw.get("pid"), raw.get("env")
    if not isinstance(pid, int) or not isinstance(env, dict):
        return None
    return DevState(path, pid, {str(k): str(v) for k, v in env.items() if k in STATE_VARS})


def running_stack(environ: Mapping[str, str], cwd: Path) -> tuple[DevState | None, str | None]:
    """The live ``attune dev`` stack of the data directory in use, and a note for the operator
    when there is a record but no stack behind it."""
    data_dir = Path(environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    path = state_path(data_dir if data_dir.is_absolute() else cwd / data_dir)
    if not path.exists():
        return None, None
    state = _read(path)
    if state is None:
        return None, f"{path} is not readable; ignoring it"
    if not pid_alive(state.pid):
        return None, f"{path} names an `attune dev` (pid {state.pid}) that is no longer running"
    return state, None
