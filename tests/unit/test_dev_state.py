"""How the operator commands find a running ``attune dev`` stack (``devstack/state.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attune.cli import use_running_dev_stack
from devstack.state import STATE_FILE, remove_state, running_stack, write_state

ENV = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5999/postgres",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:5998",
    "ATTUNE_SECRET_KEYS": "c2VjcmV0",
    "PATH": "/usr/bin",  # not a setting of the stack: never recorded
}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_state_file_is_private_and_holds_only_the_stack_settings(tmp_path: Path) -> None:
    path = write_state(tmp_path, os.getpid(), ENV)
    assert path == tmp_path / STATE_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert stored["pid"] == os.getpid()
    assert "PATH" not in stored["env"]
    state, note = running_stack({"ATTUNE_DEV_DATA_DIR": str(tmp_path)}, Path("/"))
    assert note is None and state is not None
    assert state.env["DATABASE_URL"] == ENV["DATABASE_URL"]

    remove_state(tmp_path, os.getpid() + 1)  # not ours: kept
    assert path.exists()
    remove_state(tmp_path, os.getpid())
    assert not path.exists()


def test_a_relative_data_dir_is_found_from_the_working_directory(tmp_path: Path) -> None:
    write_state(tmp_path / ".attune" / "dev", os.getpid(), ENV)
    state, _ = running_stack({}, tmp_path)
    assert state is not None
    assert running_stack({}, tmp_path / "elsewhere") == (None, None)


def test_a_stale_or_broken_state_file_is_ignored_with_a_note(tmp_path: Path) -> None:
    write_state(tmp_path, _dead_pid(), ENV)
    state, note = running_stack({"ATTUNE_DEV_DATA_DIR": str(tmp_path)}, Path("/"))
    assert state is None
    assert note is not None and "no longer running" in note
    (tmp_path / STATE_FILE).write_text("{not json")
    state, note = running_stack({"ATTUNE_DEV_DATA_DIR": str(tmp_path)}, Path("/"))
    assert state is None and note is not None and "not readable" in note


def test_operator_commands_take_the_running_stack_only_without_database_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_state(tmp_path, os.getpid(), ENV)
    environ = {"ATTUNE_DEV_DATA_DIR": str(tmp_path), "ATTUNE_SECRET_KEYS": "mine"}
    use_running_dev_stack(environ, Path("/"))
    assert environ["DATABASE_URL"] == ENV["DATABASE_URL"]
    assert environ["KAFKA_BOOTSTRAP_SERVERS"] == ENV["KAFKA_BOOTSTRAP_SERVERS"]
    assert environ["ATTUNE_SECRET_KEYS"] == "mine"  # what the environment sets wins
    assert "using the running `attune dev`" in capsys.readouterr().err

    own = {"ATTUNE_DEV_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db/x"}
    use_running_dev_stack(own, Path("/"))
    assert own == {"ATTUNE_DEV_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db/x"}
    assert capsys.readouterr().err == ""


def test_without_a_running_stack_the_missing_setting_is_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["ATTUNE_DEV_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "attune.cli", "admin", "list-tokens"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DATABASE_URL is missing" in result.stderr
