"""scripts/apt-get (what scripts/bootstrap installs packages with) waits for another package
manager holding the apt/dpkg locks, says so once, and gives up after a bound with a message,
instead of failing at once with "Could not get lock"."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APT_GET = ROOT / "scripts" / "apt-get"

pytestmark = pytest.mark.skipif(
    shutil.which("lslocks") is None or shutil.which("apt-get") is None,
    reason="needs Debian's apt-get and util-linux's lslocks",
)


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A lock file locked the way apt and dpkg lock theirs (a POSIX fcntl lock)."""
    path = tmp_path / "lock-frontend"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield path, fd
    finally:
        os.close(fd)


def run(lock: Path, wait_s: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "ATTUNE_APT_LOCKS": f"{lock} /nonexistent/lock",
        "ATTUNE_APT_LOCK_WAIT_S": str(wait_s),
    }
    return subprocess.Popen(
        [str(APT_GET), "--version"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_waits_while_the_lock_is_held_then_runs(held_lock: tuple[Path, int]) -> None:
    lock, fd = held_lock
    with run(lock, 600) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        said = proc.stderr.readline()  # blocks until the script reports the holder
        assert "waiting for another package manager to finish: python" in said, said
        assert f"(pid {os.getpid()}) on {lock}" in said and "up to 600s" in said
        assert proc.poll() is None  # still waiting: it did not fail at once
        fcntl.lockf(fd, fcntl.LOCK_UN)
        assert proc.wait(timeout=120) == 0
        assert "the lock is free" in proc.stderr.read()
        assert proc.stdout.read().startswith("apt ")  # apt-get itself ran


def test_gives_up_after_the_bound_with_a_message(held_lock: tuple[Path, int]) -> None:
    lock, _ = held_lock
    with run(lock, 1) as proc:
        assert proc.wait(timeout=120) == 75
        assert proc.stderr is not None and proc.stdout is not None
        errors = proc.stderr.read()
        assert "gave up after 1s" in errors and "still holds the lock" in errors, errors
        assert proc.stdout.read() == ""  # apt-get never ran


def test_without_a_holder_it_is_apt_get() -> None:
    result = subprocess.run(
        [str(APT_GET), "--version"],
        env={**os.environ, "ATTUNE_APT_LOCKS": "/nonexistent/lock"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("apt ") and result.stderr == ""


def test_bootstrap_installs_through_the_waiting_apt_get() -> None:
    script = (ROOT / "scripts" / "bootstrap").read_text()
    commands = [
        found
        for line in script.splitlines()
        if not line.lstrip().startswith(("#", "echo"))
        for found in re.findall(r"(\S*apt-get) (?:update|install)", line)
    ]
    assert len(commands) >= 7 and set(commands) == {"scripts/apt-get"}, commands
